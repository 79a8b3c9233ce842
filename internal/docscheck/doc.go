// Package docscheck holds tests that keep the documentation under docs/
// true: files that users copy (the GitHub Actions workflow) must parse and
// say what the docs and the CLI say, a file quoted inline in a page must
// be the same bytes as the file, and the state deadlines table gives the
// defaults the code has.
package docscheck
