package jpeg

// This file replaces the standard library's dct.go. It ports libjpeg's
// jpeg_idct_islow (jidctint.c, "accurate integer" LL&M IDCT, the default
// JDCT_ISLOW method of libjpeg and libjpeg-turbo, whose SIMD versions are
// bit-exact with it). Shortcuts for all-zero AC columns/rows are left out:
// with zero inputs the full computation gives the same values.

type block [blockSize]int32

const blockSize = 8 * 8

const (
	constBits = 13
	pass1Bits = 2

	fix0_298631336 = 2446
	fix0_390180644 = 3196
	fix0_541196100 = 4433
	fix0_765366865 = 6270
	fix0_899976223 = 7373
	fix1_175875602 = 9633
	fix1_501321110 = 12299
	fix1_847759065 = 15137
	fix1_961570560 = 16069
	fix2_053119869 = 16819
	fix2_562915447 = 20995
	fix3_072711026 = 25172
)

// descale is libjpeg's DESCALE: divide by 2**n, rounding half up.
func descale(x int64, n uint) int64 { return (x + 1<<(n-1)) >> n }

// idct1D is the 1-D LL&M inverse DCT shared by both passes; in[k] is the
// k-th coefficient (already dequantized, or pass-1 output).
func idct1D(in0, in1, in2, in3, in4, in5, in6, in7 int64) (t10, t11, t12, t13, t0, t1, t2, t3 int64) {
	// Even part.
	z2, z3 := in2, in6
	z1 := (z2 + z3) * fix0_541196100
	tmp2 := z1 + z3*-fix1_847759065
	tmp3 := z1 + z2*fix0_765366865
	tmp0 := (in0 + in4) << constBits
	tmp1 := (in0 - in4) << constBits
	tmp10, tmp13 := tmp0+tmp3, tmp0-tmp3
	tmp11, tmp12 := tmp1+tmp2, tmp1-tmp2

	// Odd part.
	tmp0, tmp1, tmp2, tmp3 = in7, in5, in3, in1
	z1 = tmp0 + tmp3
	z2 = tmp1 + tmp2
	z3 = tmp0 + tmp2
	z4 := tmp1 + tmp3
	z5 := (z3 + z4) * fix1_175875602
	tmp0 *= fix0_298631336
	tmp1 *= fix2_053119869
	tmp2 *= fix3_072711026
	tmp3 *= fix1_501321110
	z1 *= -fix0_899976223
	z2 *= -fix2_562915447
	z3 *= -fix1_961570560
	z4 *= -fix0_390180644
	z3 += z5
	z4 += z5
	tmp0 += z1 + z3
	tmp1 += z2 + z4
	tmp2 += z2 + z3
	tmp3 += z1 + z4
	return tmp10, tmp11, tmp12, tmp13, tmp0, tmp1, tmp2, tmp3
}

// idct transforms dequantized coefficients (natural order) into samples
// centred on zero; reconstructBlock adds 128 and clamps, as libjpeg's
// range-limit table does for all values a valid stream can produce.
func idct(b *block) {
	var ws [blockSize]int64
	// Pass 1: columns, results scaled up by 2**pass1Bits.
	for c := range 8 {
		t10, t11, t12, t13, t0, t1, t2, t3 := idct1D(
			int64(b[c]), int64(b[8+c]), int64(b[16+c]), int64(b[24+c]),
			int64(b[32+c]), int64(b[40+c]), int64(b[48+c]), int64(b[56+c]))
		const n = constBits - pass1Bits
		ws[0*8+c] = descale(t10+t3, n)
		ws[7*8+c] = descale(t10-t3, n)
		ws[1*8+c] = descale(t11+t2, n)
		ws[6*8+c] = descale(t11-t2, n)
		ws[2*8+c] = descale(t12+t1, n)
		ws[5*8+c] = descale(t12-t1, n)
		ws[3*8+c] = descale(t13+t0, n)
		ws[4*8+c] = descale(t13-t0, n)
	}
	// Pass 2: rows, removing the pass-1 scale and the 8x of the 2-D DCT.
	for r := range 8 {
		w := ws[8*r : 8*r+8]
		t10, t11, t12, t13, t0, t1, t2, t3 := idct1D(w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7])
		const n = constBits + pass1Bits + 3
		out := b[8*r : 8*r+8]
		out[0] = int32(descale(t10+t3, n))
		out[7] = int32(descale(t10-t3, n))
		out[1] = int32(descale(t11+t2, n))
		out[6] = int32(descale(t11-t2, n))
		out[2] = int32(descale(t12+t1, n))
		out[5] = int32(descale(t12-t1, n))
		out[3] = int32(descale(t13+t0, n))
		out[4] = int32(descale(t13-t0, n))
	}
}
