//! Message data: DATA (RFC 5321 4.1.1.4) and BDAT (RFC 3030), streamed
//! into the host's delivery transaction, then the replies: one for SMTP,
//! one per recipient for LMTP (RFC 2033 4.2).

use mailhost_sdk::delivery::{
    self, DeliveryError, RecipientResult, Transaction,
};
use mailhost_sdk::{Level, ReadError};

use crate::data::Decoder;
use crate::received::{self, Trace};
use crate::server::{Flow, Server, log};

/// Largest piece of a DATA line read at once; longer lines arrive in
/// several pieces and are kept whole.
const DATA_READ_CHUNK: u32 = 64 * 1024;

/// Bytes gathered before they go to the host in one `write`: fewer
/// crossings than one call per line, and a bounded buffer.
const WRITE_CHUNK: usize = 64 * 1024;

/// Why a message is not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Larger than the listener's limit.
    TooLarge,
    /// A CR or LF outside a CRLF pair.
    BareLineEnd,
    /// The host refused a write or could not begin.
    Store(DeliveryError),
}

/// The message on its way to the host. After a failure it swallows
/// bytes, so the client can finish sending before it gets the reply.
pub struct Body {
    transaction: Option<Transaction>,
    buffer: Vec<u8>,
    /// Message bytes seen, the `Received:` header not counted.
    size: u64,
    max_size: u64,
    failure: Option<Failure>,
}

impl Body {
    fn push(&mut self, bytes: &[u8]) {
        if self.failure.is_some() {
            return;
        }

        self.size += bytes.len() as u64;
        if self.size > self.max_size {
            self.fail(Failure::TooLarge);
            return;
        }

        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= WRITE_CHUNK {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let Some(transaction) = &self.transaction else {
            return;
        };
        if let Err(err) = transaction.write(&self.buffer) {
            let failure = match err {
                DeliveryError::TooLarge => Failure::TooLarge,
                other => Failure::Store(other),
            };
            self.fail(failure);
        }
        self.buffer.clear();
    }

    /// Give up on the message: dropping the transaction discards what
    /// was written.
    fn fail(&mut self, failure: Failure) {
        self.failure = Some(failure);
        self.transaction = None;
        self.buffer = Vec::new();
    }
}

/// A BDAT transfer between its first and its LAST chunk.
pub struct Chunks {
    body: Body,
    decoder: Decoder,
}

impl Server {
    /// DATA: reply 354, read up to CRLF.CRLF, deliver.
    pub fn data(&mut self) -> Flow {
        let Some(envelope) = &self.envelope else {
            return self.refuse(503, "5.5.1 Need MAIL before DATA");
        };
        if envelope.chunks.is_some() {
            return self.refuse(503, "5.5.1 DATA after BDAT");
        }
        if envelope.recipients.is_empty() {
            // RFC 2920 3.1: the client pipelined DATA after refused
            // recipients and sends no data on this reply.
            return self.refuse(554, "5.5.1 No valid recipients");
        }

        let mut body = match self.open_body() {
            Ok(body) => body,
            Err(flow) => return flow,
        };
        self.reply(354, "Go ahead; end with <CRLF>.<CRLF>");

        let mut decoder = Decoder::for_data();
        let mut decoded = Vec::new();
        while !decoder.is_done() {
            // A piece ends at an LF at the latest, and the end marker
            // ends at an LF, so no pipelined command is read as data.
            let piece = match self.session.read_line_part(DATA_READ_CHUNK) {
                Ok(piece) => piece,
                Err(err) => return self.abandon(err),
            };
            decoded.clear();
            decoder.feed(&piece, &mut decoded);
            body.push(&decoded);
        }

        if decoder.saw_bare_line_end() {
            body.fail(Failure::BareLineEnd);
        }
        self.deliver(body)
    }

    /// BDAT: take `size` bytes now; deliver on LAST.
    pub fn bdat(&mut self, size: u64, last: bool) -> Flow {
        let extended = self.hello.as_ref().is_some_and(|hello| hello.extended);
        let refusal = match &self.envelope {
            None => Some((503, "5.5.1 Need MAIL before BDAT")),
            Some(envelope) if envelope.recipients.is_empty() => {
                Some((554, "5.5.1 No valid recipients"))
            }
            Some(_) if !extended => Some((503, "5.5.1 BDAT needs EHLO")),
            Some(_) => None,
        };
        if let Some((code, text)) = refusal {
            // The chunk follows the command whatever the reply: read it
            // so that its bytes are never taken for commands.
            if let Err(err) = self.session.read_exact_with(size, |_| {}) {
                return self.abandon(err);
            }
            return self.refuse(code, text);
        }

        let started =
            self.envelope.as_mut().expect("checked above").chunks.take();
        let mut chunks = match started {
            Some(chunks) => chunks,
            None => match self.open_body() {
                Ok(body) => Chunks {
                    body,
                    decoder: Decoder::for_bdat(),
                },
                Err(flow) => {
                    if let Err(err) = self.session.read_exact_with(size, |_| {})
                    {
                        return self.abandon(err);
                    }
                    return flow;
                }
            },
        };

        let mut decoded = Vec::new();
        let read = self.session.read_exact_with(size, |piece| {
            decoded.clear();
            chunks.decoder.feed(piece, &mut decoded);
            chunks.body.push(&decoded);
        });
        if let Err(err) = read {
            return self.abandon(err);
        }

        if last {
            chunks.decoder.finish();
            if chunks.decoder.saw_bare_line_end() {
                chunks.body.fail(Failure::BareLineEnd);
            }
            return self.deliver(chunks.body);
        }
        if let Some(failure) = chunks.body.failure {
            // RFC 3030 2: a refused chunk ends the transaction and the
            // client sends no more chunks. It is one reply, in LMTP too:
            // only LAST is answered per recipient.
            self.envelope = None;
            let (code, text) = failure_reply(failure);
            return match failure {
                Failure::Store(_) => {
                    self.reply(code, text);
                    Flow::Continue
                }
                _ => self.refuse(code, text),
            };
        }

        self.envelope.as_mut().expect("checked above").chunks = Some(chunks);
        self.reply(250, &format!("2.0.0 {size} octets received"));
        Flow::Continue
    }

    /// Begin the host's transaction and write the trace header. On
    /// failure the reply is queued and the transaction reset.
    fn open_body(&mut self) -> Result<Body, Flow> {
        let envelope = self.envelope.as_ref().expect("callers check");
        let transaction = match delivery::begin(
            &envelope.return_path,
            &envelope.recipients,
        ) {
            Ok(transaction) => transaction,
            Err(err) => {
                log(Level::Warn, &format!("delivery could not begin: {err:?}"));
                self.envelope = None;
                self.reply(
                    451,
                    "4.3.0 Temporary local problem, try again later",
                );
                return Err(Flow::Continue);
            }
        };

        let mut body = Body {
            transaction: Some(transaction),
            buffer: Vec::with_capacity(WRITE_CHUNK),
            size: 0,
            max_size: self.max_size,
            failure: None,
        };
        let header = self.trace_header();
        body.buffer.extend_from_slice(header.as_bytes());
        Ok(body)
    }

    fn trace_header(&self) -> String {
        let envelope = self.envelope.as_ref().expect("callers check");
        let tls = self
            .info
            .tls
            .as_ref()
            .map(|tls| (tls.version.as_str(), tls.cipher.as_str()));
        let account = self.identity.as_ref().map(|identity| identity.name());
        let recipient = match envelope.recipients.as_slice() {
            [only] => Some(only.as_str()),
            _ => None,
        };
        Trace {
            helo: self
                .hello
                .as_ref()
                .map_or("unknown", |hello| hello.name.as_str()),
            peer_address: &self.info.peer_address,
            hostname: &self.config.hostname,
            lmtp: self.lmtp(),
            extended: self.hello.as_ref().is_some_and(|hello| hello.extended),
            smtputf8: envelope.smtputf8,
            tls,
            authenticated: account.as_deref(),
            id: self.info.id,
            recipient,
            now: received::now(),
        }
        .header()
    }

    /// The client left or the host gave up mid-message: the dropped
    /// transaction discards the partial message.
    fn abandon(&mut self, err: ReadError) -> Flow {
        self.envelope = None;
        self.goodbye(err);
        Flow::Close
    }

    /// Commit the message unless it failed, then reply and end the
    /// transaction.
    fn deliver(&mut self, mut body: Body) -> Flow {
        let envelope = self.envelope.take().expect("callers check");

        if body.failure.is_none() {
            body.flush();
        }
        let outcome = match (body.failure, body.transaction.take()) {
            (Some(failure), _) => Err(failure),
            (None, Some(transaction)) => {
                transaction.commit().map_err(Failure::Store)
            }
            (None, None) => {
                Err(Failure::Store(DeliveryError::TemporaryFailure))
            }
        };

        let summary = match &outcome {
            Ok(results) => {
                let delivered =
                    results.iter().filter(|r| r.outcome.is_ok()).count();
                format!("delivered to {delivered} of {}", results.len())
            }
            Err(failure) => format!("refused: {failure:?}"),
        };
        self.messages += 1;
        log(
            Level::Info,
            &format!(
                "message {} from=<{}> size={} recipients={} {summary}",
                self.messages,
                envelope.return_path,
                body.size,
                envelope.recipients.len()
            ),
        );

        if self.lmtp() {
            self.reply_per_recipient(&envelope.accepted, &outcome);
            return Flow::Continue;
        }
        match outcome {
            Ok(results) => match worst(&results) {
                None => {
                    self.reply(250, "2.0.0 Message accepted for delivery");
                    Flow::Continue
                }
                // One SMTP reply covers every recipient. Some copies may
                // be on disk already; a retry duplicating them is better
                // than a message lost without a bounce.
                Some(err) => {
                    let (code, text) = store_reply(err);
                    self.reply(code, text);
                    Flow::Continue
                }
            },
            Err(Failure::Store(err)) => {
                let (code, text) = store_reply(err);
                self.reply(code, text);
                Flow::Continue
            }
            Err(failure) => {
                let (code, text) = failure_reply(failure);
                self.refuse(code, text)
            }
        }
    }

    /// LMTP: one reply for each RCPT that got a 250, in order.
    fn reply_per_recipient(
        &mut self,
        accepted: &[String],
        outcome: &Result<Vec<RecipientResult>, Failure>,
    ) {
        for recipient in accepted {
            let result = match outcome {
                Ok(results) => results
                    .iter()
                    .find(|result| {
                        result.recipient.eq_ignore_ascii_case(recipient)
                    })
                    .map_or(Err(DeliveryError::TemporaryFailure), |result| {
                        result.outcome
                    }),
                Err(Failure::Store(err)) => Err(*err),
                Err(failure) => {
                    let (code, text) = failure_reply(*failure);
                    self.reply(code, &format!("{text} <{recipient}>"));
                    continue;
                }
            };
            match result {
                Ok(()) => {
                    self.reply(250, &format!("2.0.0 <{recipient}> Delivered"))
                }
                Err(err) => {
                    let (code, text) = store_reply(err);
                    self.reply(code, &format!("{text} <{recipient}>"));
                }
            }
        }
    }
}

/// The failure the client should hear about first: a temporary one, so
/// it retries, else the first permanent one.
fn worst(results: &[RecipientResult]) -> Option<DeliveryError> {
    let errors = results.iter().filter_map(|result| result.outcome.err());
    let mut first = None;
    for err in errors {
        if err == DeliveryError::TemporaryFailure {
            return Some(err);
        }
        first.get_or_insert(err);
    }
    first
}

fn store_reply(err: DeliveryError) -> (u16, &'static str) {
    match err {
        DeliveryError::TooLarge => (552, "5.3.4 Message too big for system"),
        DeliveryError::UnknownUser => (550, "5.1.1 User unknown"),
        DeliveryError::TemporaryFailure => {
            (451, "4.3.0 Temporary local problem, try again later")
        }
        DeliveryError::InvalidArgument => {
            (554, "5.3.0 Internal delivery error")
        }
    }
}

fn failure_reply(failure: Failure) -> (u16, &'static str) {
    match failure {
        Failure::TooLarge => (552, "5.3.4 Message too big for system"),
        Failure::BareLineEnd => (
            554,
            "5.6.0 Bare CR or LF in message data; lines must end in CRLF",
        ),
        Failure::Store(err) => store_reply(err),
    }
}
