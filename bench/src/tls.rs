//! TLS for the benchmark: a client that trusts exactly the self-signed
//! certificate `mailhost self-signed-cert` wrote, and a server side for
//! the native baseline, both on rustls with aws-lc-rs as the host uses.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio_rustls::rustls::client::Resumption;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

fn load_chain(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| {
        format!("failed to read certificate `{}`", path.display())
    })?;
    let chain = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| {
            format!("certificate `{}` is not valid PEM", path.display())
        })?;
    if chain.is_empty() {
        bail!("certificate `{}` holds no certificate", path.display());
    }
    Ok(chain)
}

fn load_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = std::fs::read(path)
        .with_context(|| format!("failed to read key `{}`", path.display()))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .with_context(|| format!("key `{}` is not valid PEM", path.display()))?
        .with_context(|| {
            format!("key `{}` holds no private key", path.display())
        })
}

/// A connector that trusts only the certificate in `cert`. Without
/// `resume` every session is a full handshake, the worst case for the
/// server; with it the client offers session tickets as mail programs do.
pub fn connector(cert: &Path, resume: bool) -> anyhow::Result<TlsConnector> {
    let mut roots = RootCertStore::empty();
    for cert in load_chain(cert)? {
        roots
            .add(cert)
            .context("the certificate cannot serve as a trust anchor")?;
    }

    let provider = Arc::new(aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS 1.2 and 1.3 are unavailable")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    if !resume {
        config.resumption = Resumption::disabled();
    }
    Ok(TlsConnector::from(Arc::new(config)))
}

/// An acceptor for the native baseline with the host's choices: TLS 1.3
/// and 1.2, no client certificates, no ALPN.
pub fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let chain = load_chain(cert)?;
    let key = load_key(key)?;

    let provider = Arc::new(aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[
            &rustls::version::TLS13,
            &rustls::version::TLS12,
        ])
        .context("TLS 1.2 and 1.3 are unavailable")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the certificate does not match the key")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
