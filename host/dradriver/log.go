package dradriver

import (
	"github.com/go-logr/logr"
	"github.com/hashicorp/go-hclog"
)

// logSink sends the logs of Kubernetes' packages (klog's logr interface,
// which the kubelet plugin helper and the ResourceSlice controller log
// through) to the driver's hclog logger: their errors as warnings (the
// driver reports them itself, in its status), V(0) as debug, anything more
// verbose as trace.
type logSink struct {
	log  hclog.Logger
	name string
}

var _ logr.LogSink = (*logSink)(nil)

func newLogger(log hclog.Logger) logr.Logger { return logr.New(&logSink{log: log}) }

func (s *logSink) Init(logr.RuntimeInfo) {}

func (s *logSink) Enabled(level int) bool {
	if level == 0 {
		return s.log.IsDebug()
	}
	return s.log.IsTrace()
}

func (s *logSink) Info(level int, msg string, kv ...any) {
	if level == 0 {
		s.log.Debug(s.prefix(msg), kv...)
		return
	}
	s.log.Trace(s.prefix(msg), kv...)
}

func (s *logSink) Error(err error, msg string, kv ...any) {
	s.log.Warn(s.prefix(msg), append(kv, "error", err)...)
}

func (s *logSink) WithValues(kv ...any) logr.LogSink {
	return &logSink{log: s.log.With(kv...), name: s.name}
}

func (s *logSink) WithName(name string) logr.LogSink {
	if s.name != "" {
		name = s.name + "/" + name
	}
	return &logSink{log: s.log, name: name}
}

func (s *logSink) prefix(msg string) string {
	if s.name == "" {
		return msg
	}
	return s.name + ": " + msg
}
