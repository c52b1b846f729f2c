#include "decode.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

// guard is the error manager: pub must come first, so that cinfo->err
// points at the whole guard.
typedef struct {
	struct jpeg_error_mgr pub;
	struct jpeg_progress_mgr progress;
	jmp_buf jump;
	int code;
	int max_scans;
	const volatile int *cancel;
	char msg[JMSG_LENGTH_MAX];
} guard;

static void fail(j_common_ptr cinfo, int code) {
	guard *g = (guard *)cinfo->err;
	g->code = code;
	longjmp(g->jump, 1);
}

// error_exit replaces libjpeg's, which prints and calls exit().
static void error_exit(j_common_ptr cinfo) {
	guard *g = (guard *)cinfo->err;
	(*cinfo->err->format_message)(cinfo, g->msg);
	fail(cinfo, PLJ_ERR_CORRUPT);
}

// emit_message ignores warnings (as Pillow does: extraneous bytes, a
// corrupt segment) except a premature end of the data: a truncated file is
// an error, as it is for Pillow, not an image padded with gray.
static void emit_message(j_common_ptr cinfo, int level) {
	if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
		error_exit(cinfo);
	}
}

// progress stops a decode that was cancelled or that has too many scans;
// libjpeg calls it for every row of every scan it reads (the same bound as
// djpeg -maxscans).
static void progress(j_common_ptr cinfo) {
	guard *g = (guard *)cinfo->err;
	if (*g->cancel) {
		fail(cinfo, PLJ_ERR_CANCELLED);
	}
	if (cinfo->is_decompressor &&
	    ((j_decompress_ptr)cinfo)->input_scan_number > g->max_scans) {
		fail(cinfo, PLJ_ERR_TOO_MANY_SCANS);
	}
}

int plj_decode(const unsigned char *data, size_t len, long long max_pixels,
               int max_scans, long max_memory, int color,
               const volatile int *cancel, plj_result *res) {
	struct jpeg_decompress_struct cinfo;
	guard g;
	size_t row;

	memset(res, 0, sizeof(*res));
	memset(&g, 0, sizeof(g));
	cinfo.err = jpeg_std_error(&g.pub);
	g.pub.error_exit = error_exit;
	g.pub.emit_message = emit_message;
	g.max_scans = max_scans;
	g.cancel = cancel;
	if (setjmp(g.jump)) {
		res->code = g.code;
		res->scans = cinfo.input_scan_number;
		snprintf(res->msg, sizeof(res->msg), "%s", g.msg);
		free(res->pix);
		res->pix = NULL;
		jpeg_destroy_decompress(&cinfo);
		return res->code;
	}
	jpeg_create_decompress(&cinfo);
	g.progress.progress_monitor = progress;
	cinfo.progress = &g.progress;
	cinfo.mem->max_memory_to_use = max_memory;
	jpeg_mem_src(&cinfo, data, (unsigned long)len);
	jpeg_read_header(&cinfo, TRUE);

	res->width = (int)cinfo.image_width;
	res->height = (int)cinfo.image_height;
	res->components = cinfo.num_components;
	res->progressive = cinfo.progressive_mode ? 1 : 0;
	res->adobe = cinfo.saw_Adobe_marker ? 1 : 0;
	if ((long long)cinfo.image_width * (long long)cinfo.image_height > max_pixels) {
		fail((j_common_ptr)&cinfo, PLJ_ERR_TOO_MANY_PIXELS);
	}
	switch (cinfo.jpeg_color_space) {
	case JCS_YCbCr:
		if (color) {
			// A colour model's input: libjpeg's own YCbCr->RGB.
			cinfo.out_color_space = JCS_EXT_RGBA;
			res->out = PLJ_OUT_RGBA;
			break;
		}
		// fallthrough
	case JCS_GRAYSCALE:
		// For YCbCr the luma plane Y itself: chroma is not even
		// inverse-transformed. This is what the training code takes.
		cinfo.out_color_space = JCS_GRAYSCALE;
		res->out = PLJ_OUT_GRAY;
		break;
	case JCS_RGB:
		cinfo.out_color_space = JCS_EXT_RGBA;
		res->out = PLJ_OUT_RGBA;
		break;
	case JCS_CMYK:
	case JCS_YCCK:
		cinfo.out_color_space = JCS_CMYK;
		res->out = PLJ_OUT_CMYK;
		break;
	default:
		fail((j_common_ptr)&cinfo, PLJ_ERR_COLOR_SPACE);
	}

	jpeg_start_decompress(&cinfo);
	row = (size_t)cinfo.output_width * (size_t)cinfo.output_components;
	res->pix = malloc(row * cinfo.output_height);
	if (res->pix == NULL) {
		fail((j_common_ptr)&cinfo, PLJ_ERR_NO_MEMORY);
	}
	while (cinfo.output_scanline < cinfo.output_height) {
		JSAMPROW rows[1];
		rows[0] = res->pix + row * cinfo.output_scanline;
		jpeg_read_scanlines(&cinfo, rows, 1);
	}
	jpeg_finish_decompress(&cinfo);
	res->scans = cinfo.input_scan_number;
	jpeg_destroy_decompress(&cinfo);
	return PLJ_OK;
}
