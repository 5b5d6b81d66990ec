//! Plugin output in the host's log: records from the `log` interface and
//! lines a plugin prints to stdout or stderr, both rate-limited per
//! session so a chatty or hostile plugin cannot flood the log.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use crate::bindings::mailhost::plugin::log as wit;
use crate::session::SessionState;

/// Longest plugin record kept, in bytes; the rest is cut.
const MAX_RECORD: usize = 4096;

/// A token bucket: `rate` records a second, bursts up to `rate`.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    refilled: Instant,
    dropped: u64,
}

/// The per-session rate limiter, shared by the `log` interface and the
/// stdout and stderr streams.
#[derive(Debug, Clone)]
pub struct PluginLog {
    bucket: Arc<Mutex<Bucket>>,
    callsites: &'static Callsites,
}

impl PluginLog {
    /// A limiter of `rate_per_second` records for a session whose records
    /// go to `callsites` (see [`callsites_for`]).
    pub fn new(
        rate_per_second: u32,
        callsites: &'static Callsites,
    ) -> PluginLog {
        let rate = f64::from(rate_per_second.max(1));
        PluginLog {
            bucket: Arc::new(Mutex::new(Bucket {
                rate,
                tokens: rate,
                refilled: Instant::now(),
                dropped: 0,
            })),
            callsites,
        }
    }

    /// Take a token; report how many records were dropped since the last
    /// one that got through, so the operator sees the gap.
    fn admit(&self) -> Option<u64> {
        let mut bucket = self.bucket.lock().unwrap();
        let now = Instant::now();
        let earned =
            now.duration_since(bucket.refilled).as_secs_f64() * bucket.rate;
        bucket.tokens = (bucket.tokens + earned).min(bucket.rate);
        bucket.refilled = now;

        if bucket.tokens < 1.0 {
            bucket.dropped += 1;
            return None;
        }
        bucket.tokens -= 1.0;
        Some(std::mem::take(&mut bucket.dropped))
    }

    /// Emit one record at `level` under the target `plugin::<listener>`,
    /// so operators filter by listener (`RUST_LOG=plugin::smtp=debug`).
    /// The session span supplies the connection id and peer.
    pub fn record(&self, level: wit::Level, message: &str) {
        let Some(dropped) = self.admit() else { return };
        if dropped > 0 {
            let note = format!("{dropped} plugin log records dropped");
            self.callsites.emit(wit::Level::Warn, &note);
        }

        self.callsites.emit(level, truncate(message, MAX_RECORD));
    }
}

/// Most distinct listener names that get a log target of their own; past
/// it (only reachable through many config reloads) records share one.
const MAX_LOG_TARGETS: usize = 256;

/// `tracing` needs a static callsite per target and level. Listener
/// names come from the config, so each gets one set, made once and kept
/// for the life of the process.
#[derive(Debug)]
pub struct Callsites {
    by_level: [PluginCallsite; 5],
}

#[derive(Debug)]
struct PluginCallsite {
    metadata: OnceLock<tracing_core::Metadata<'static>>,
}

impl tracing_core::Callsite for PluginCallsite {
    fn set_interest(&self, _interest: tracing_core::Interest) {}

    fn metadata(&self) -> &tracing_core::Metadata<'_> {
        self.metadata
            .get()
            .expect("callsite metadata is set at creation")
    }
}

/// The callsites of the target `plugin::<listener>`. Looked up once per
/// listener, not per session: the lookup takes a process-wide lock.
pub fn callsites_for(listener: &str) -> &'static Callsites {
    static MADE: OnceLock<Mutex<HashMap<String, &'static Callsites>>> =
        OnceLock::new();
    let mut made = MADE.get_or_init(Default::default).lock().unwrap();

    let key = if made.len() < MAX_LOG_TARGETS || made.contains_key(listener) {
        listener
    } else {
        "other"
    };
    if let Some(existing) = made.get(key) {
        return existing;
    }

    let target: &'static str =
        Box::leak(format!("plugin::{key}").into_boxed_str());
    let callsites: &'static Callsites = Box::leak(Box::new(Callsites {
        by_level: std::array::from_fn(|_| PluginCallsite {
            metadata: OnceLock::new(),
        }),
    }));
    let levels = [
        tracing::Level::TRACE,
        tracing::Level::DEBUG,
        tracing::Level::INFO,
        tracing::Level::WARN,
        tracing::Level::ERROR,
    ];
    for (callsite, level) in callsites.by_level.iter().zip(levels) {
        let fields = tracing_core::field::FieldSet::new(
            &["message"],
            tracing_core::identify_callsite!(callsite),
        );
        let metadata = tracing_core::Metadata::new(
            "plugin record",
            target,
            level,
            None,
            None,
            None,
            fields,
            tracing_core::metadata::Kind::EVENT,
        );
        let _ = callsite.metadata.set(metadata);
        tracing_core::callsite::register(callsite);
    }
    made.insert(key.to_owned(), callsites);
    callsites
}

impl Callsites {
    fn emit(&'static self, level: wit::Level, message: &str) {
        let index = match level {
            wit::Level::Trace => 0,
            wit::Level::Debug => 1,
            wit::Level::Info => 2,
            wit::Level::Warn => 3,
            wit::Level::Error => 4,
        };
        let Some(metadata) = self.by_level[index].metadata.get() else {
            return;
        };
        let enabled = tracing::dispatcher::get_default(|d| d.enabled(metadata));
        if !enabled {
            return;
        }

        let fields = metadata.fields();
        let Some(field) = fields.field("message") else {
            return;
        };
        let values = [(&field, Some(&message as &dyn tracing::Value))];
        tracing_core::Event::dispatch(metadata, &fields.value_set(&values));
    }
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl wit::Host for SessionState {
    fn write(
        &mut self,
        level: wit::Level,
        message: String,
    ) -> wasmtime::Result<()> {
        self.log.record(level, &message);
        Ok(())
    }
}

/// A plugin's stdout or stderr: whole lines become log records.
#[derive(Clone)]
pub struct OutputToLog {
    log: PluginLog,
    level: wit::Level,
    span: tracing::Span,
}

impl OutputToLog {
    pub fn new(log: PluginLog, level: wit::Level, span: tracing::Span) -> Self {
        OutputToLog { log, level, span }
    }
}

impl IsTerminal for OutputToLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for OutputToLog {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            sink: self.clone(),
            pending: Vec::new(),
        })
    }
}

/// Collects bytes until a newline, then logs the line. A line longer than
/// the record limit is logged in pieces.
struct LineWriter {
    sink: OutputToLog,
    pending: Vec<u8>,
}

impl LineWriter {
    fn emit(&mut self, upto: usize) {
        let line: Vec<u8> = self.pending.drain(..upto).collect();
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        let _entered = self.sink.span.enter();
        self.sink.log.record(self.sink.level, text);
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.pending.extend_from_slice(data);
        while let Some(at) = self.pending.iter().position(|&b| b == b'\n') {
            self.emit(at + 1);
        }
        if self.pending.len() >= MAX_RECORD {
            self.emit(MAX_RECORD);
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.pending.is_empty() {
            let len = self.pending.len();
            self.emit(len);
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_drops_past_the_rate_and_counts_the_drops() {
        let log = PluginLog::new(3, callsites_for("test"));
        assert_eq!(log.admit(), Some(0));
        assert_eq!(log.admit(), Some(0));
        assert_eq!(log.admit(), Some(0));
        assert_eq!(log.admit(), None);
        assert_eq!(log.admit(), None);

        std::thread::sleep(std::time::Duration::from_millis(400));
        assert_eq!(log.admit(), Some(2));
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
