package backendtest

// refSqueeze2 follows dlf-spec §2.2 literally: view [N,H,W,C] as [N, H/2, 2, W/2, 2, C] and
// transpose to [N, H/2, W/2, C, 2, 2], so output channel c·4 + dy·2 + dx holds x[n, 2i+dy, 2j+dx, c].
func refSqueeze2(s []int, x []float64) []float64 {
	n, h, w, c := s[0], s[1], s[2], s[3]
	out := make([]float64, len(x))
	for b := 0; b < n; b++ {
		for i := 0; i < h/2; i++ {
			for dy := 0; dy < 2; dy++ {
				for j := 0; j < w/2; j++ {
					for dx := 0; dx < 2; dx++ {
						for ch := 0; ch < c; ch++ {
							src := ((b*h+2*i+dy)*w+2*j+dx)*c + ch
							dst := ((b*(h/2)+i)*(w/2)+j)*(4*c) + ch*4 + dy*2 + dx
							out[dst] = x[src]
						}
					}
				}
			}
		}
	}
	return out
}

// refUnsqueeze2 is the inverse map: src [N,H,W,4C] to [N,2H,2W,C].
func refUnsqueeze2(s []int, x []float64) []float64 {
	n, h, w, c4 := s[0], s[1], s[2], s[3]
	c := c4 / 4
	out := make([]float64, len(x))
	for b := 0; b < n; b++ {
		for i := 0; i < h; i++ {
			for j := 0; j < w; j++ {
				for ch := 0; ch < c; ch++ {
					for dy := 0; dy < 2; dy++ {
						for dx := 0; dx < 2; dx++ {
							src := ((b*h+i)*w+j)*c4 + ch*4 + dy*2 + dx
							dst := ((b*2*h+2*i+dy)*(2*w)+2*j+dx)*c + ch
							out[dst] = x[src]
						}
					}
				}
			}
		}
	}
	return out
}
