// Package docs holds the project's documentation pages; its test is the
// docs check (links, anchors, repository paths, hack/ commands, the
// configuration reference, the README's size), run in both tiers.
package docs
