// Package api holds the protobuf sources (proto/) and the generated Go (gen/).
package api

// go generate runs in this directory; point buf at the repository root.
//go:generate go tool buf format -w ..
//go:generate go tool buf lint ..
//go:generate go tool buf generate .. --template ../buf.gen.yaml -o ..
