// Package markdown holds what the docs check and the pipelines' tests both
// need to know about Markdown as GitHub and GitLab render it.
package markdown

import "strings"

// Anchor is the id GitHub (and GitLab) give a heading: lower case, code
// marks and punctuation dropped, spaces to hyphens.
func Anchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || ('a' <= r && r <= 'z') || ('0' <= r && r <= '9'):
			b.WriteRune(r)
		}
	}
	return b.String()
}
