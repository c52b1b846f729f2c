// Decoding with libjpeg(-turbo) behind a setjmp/longjmp error manager: the
// library's default error handler calls exit(), and no libjpeg error may
// leave this file.
#ifndef PLANETS_LIBJPEG_DECODE_H
#define PLANETS_LIBJPEG_DECODE_H

#include <stddef.h>

// Outcomes of plj_decode.
enum {
	PLJ_OK = 0,
	PLJ_ERR_CORRUPT = 1,         // libjpeg refused the data (message in msg)
	PLJ_ERR_TOO_MANY_PIXELS = 2, // the header announces more than max_pixels
	PLJ_ERR_TOO_MANY_SCANS = 3,  // more than max_scans scans
	PLJ_ERR_CANCELLED = 4,       // *cancel became non-zero
	PLJ_ERR_COLOR_SPACE = 5,     // a colour space we do not decode
	PLJ_ERR_NO_MEMORY = 6,       // malloc failed for the output
};

// Output colour models.
enum {
	PLJ_OUT_GRAY = 1, // gray input, or YCbCr without color: the luma plane, 1 byte a pixel
	PLJ_OUT_RGBA = 2, // RGB input, or YCbCr with color: 4 bytes a pixel, alpha 255
	PLJ_OUT_CMYK = 3, // CMYK or YCCK input: 4 bytes a pixel, as stored
};

typedef struct {
	int width, height;
	int components;  // in the file
	int progressive; // 1 for a progressive JPEG
	int adobe;       // 1 if an Adobe marker was seen (inverted CMYK)
	int out;         // PLJ_OUT_*
	int scans;       // scans read
	int code;        // PLJ_OK or PLJ_ERR_*
	char msg[200];   // libjpeg's message for PLJ_ERR_CORRUPT
	unsigned char *pix; // malloc'ed output (free with free), row-major, no padding
} plj_result;

// plj_decode reads the header of the JPEG in data, refuses it if it has more
// than max_pixels pixels, then decodes it, stopping after max_scans scans or
// when *cancel turns non-zero. max_memory bounds libjpeg's whole-image
// buffers (progressive and multi-scan files). color non-zero decodes a
// YCbCr JPEG to RGB instead of its luma plane. On success res->pix holds
// width*height*(1 or 4) bytes that the caller frees.
int plj_decode(const unsigned char *data, size_t len, long long max_pixels,
               int max_scans, long max_memory, int color,
               const volatile int *cancel, plj_result *res);

#endif
