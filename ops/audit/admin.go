package audit

import (
	"context"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Identify names the caller of an admin RPC from its request headers (for
// example by resolving the admin key); it must not return the credential.
type Identify func(ctx context.Context, h http.Header) (principal, keyID string)

// AdminInterceptor writes one Admin event for every RPC with side effects
// (procedures not marked NO_SIDE_EFFECTS), whatever its outcome. The object
// is the request's name or id field (or its embedded object's name);
// nothing else of the request is logged.
func AdminInterceptor(l *Logger, identify Identify) connect.Interceptor {
	return adminInterceptor{l: l, identify: identify}
}

type adminInterceptor struct {
	l        *Logger
	identify Identify
}

func (a adminInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		res, err := next(ctx, req)
		spec := req.Spec()
		if a.l == nil || spec.IsClient || spec.IdempotencyLevel == connect.IdempotencyNoSideEffects {
			return res, err
		}
		ev := Admin{Time: time.Now(), Procedure: spec.Procedure, Code: "ok"}
		if err != nil {
			ev.Code = connect.CodeOf(err).String()
		}
		if a.identify != nil {
			ev.Principal, ev.KeyID = a.identify(ctx, req.Header())
		}
		if m, ok := req.Any().(proto.Message); ok {
			ev.Object = objectName(m.ProtoReflect())
		}
		if res != nil {
			if m, ok := res.Any().(proto.Message); ok {
				ev.Revision = revision(m.ProtoReflect())
			}
		}
		_ = a.l.Admin(ev)
		return res, err
	}
}

func (a adminInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (a adminInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// identifying fields, in order of preference. Secret-bearing fields (a
// pinned key value, auth values) are never among them.
var idFields = []protoreflect.Name{"name", "id", "principal", "server"}

// objectName finds the object a request names: a top-level identifying
// string, else the name of an embedded object (PutServer's server).
func objectName(m protoreflect.Message) string {
	fields := m.Descriptor().Fields()
	if p, s := str(m, "principal"), str(m, "server"); p != "" && s != "" {
		return p + "/" + s // a vault connection
	}
	for _, n := range idFields {
		f := fields.ByName(n)
		if f == nil || f.IsList() || f.IsMap() {
			continue
		}
		switch f.Kind() {
		case protoreflect.StringKind:
			if v := m.Get(f).String(); v != "" {
				return v
			}
		case protoreflect.MessageKind:
			if m.Has(f) {
				if v := objectName(m.Get(f).Message()); v != "" {
					return v
				}
			}
		}
	}
	for i := range fields.Len() {
		f := fields.Get(i)
		if f.Kind() == protoreflect.MessageKind && !f.IsList() && !f.IsMap() && m.Has(f) {
			sub := m.Get(f).Message()
			if nf := sub.Descriptor().Fields().ByName("name"); nf != nil && nf.Kind() == protoreflect.StringKind {
				if v := sub.Get(nf).String(); v != "" {
					return v
				}
			}
		}
	}
	return ""
}

// revision finds a response's revision (top level or in its object).
func revision(m protoreflect.Message) int64 {
	fields := m.Descriptor().Fields()
	if f := fields.ByName("revision"); f != nil && f.Kind() == protoreflect.Int64Kind {
		return m.Get(f).Int()
	}
	for i := range fields.Len() {
		f := fields.Get(i)
		if f.Kind() == protoreflect.MessageKind && !f.IsList() && !f.IsMap() && m.Has(f) {
			sub := m.Get(f).Message()
			if rf := sub.Descriptor().Fields().ByName("revision"); rf != nil && rf.Kind() == protoreflect.Int64Kind {
				return sub.Get(rf).Int()
			}
		}
	}
	return 0
}

func str(m protoreflect.Message, name protoreflect.Name) string {
	f := m.Descriptor().Fields().ByName(name)
	if f == nil || f.Kind() != protoreflect.StringKind || f.IsList() {
		return ""
	}
	return m.Get(f).String()
}
