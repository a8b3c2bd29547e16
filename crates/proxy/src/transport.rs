//! How the proxy talks to servers (Traefik's `serversTransport`): TLS to `https://` backends
//! (root CAs, server name, client certificate, or no verification at all when asked), HTTP/2
//! or not, idle connections kept per host, dial and response-header timeouts. Each transport
//! owns its connection pools; a reload that keeps a transport's definition keeps its pools.

use std::sync::Arc;
use std::time::Duration;

use crate::body::RequestBody;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::config::ServersTransportConfig;
use crate::worker::PerWorker;

/// Clients built from one transport definition.
#[derive(Debug)]
pub struct Transport {
    pub(crate) definition: ServersTransportConfig,
    /// `http://` and `https://` servers (ALPN picks HTTP/2 over TLS unless disabled), one
    /// client per worker: their connections are driven by tasks on the runtime that opened
    /// them.
    pub(crate) client: PerWorker<Client<HttpsConnector<HttpConnector>, RequestBody>>,
    /// `h2c://` servers: HTTP/2 without TLS, one client per worker.
    pub(crate) h2c: PerWorker<Client<HttpsConnector<HttpConnector>, RequestBody>>,
    /// `http://` servers for requests without a body or upgrade (edgeplane's own client).
    pub(crate) h1: Arc<crate::h1::Pool>,
    pub(crate) response_header_timeout: Option<Duration>,
}

impl Transport {
    /// Builds the clients; a CA or client certificate that cannot be read is an error.
    pub fn build(def: &ServersTransportConfig) -> Result<Transport, String> {
        let builder = verifying_builder(&def.root_cas, def.insecure_skip_verify)?;
        let mut tls = match &def.client_certificate {
            None => builder.with_no_client_auth(),
            Some(c) => {
                let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&c.chain)
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("unreadable client certificate: {e}"))?;
                let key = PrivateKeyDer::from_pem_slice(&c.key)
                    .map_err(|_| "unreadable client key".to_string())?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("unusable client certificate: {e}"))?
            }
        };
        // ALPN is set by the connector builder from the enabled protocols.
        tls.alpn_protocols.clear();
        let connector = |tls: rustls::ClientConfig| {
            let mut http = HttpConnector::new();
            http.set_nodelay(true);
            http.enforce_http(false);
            http.set_connect_timeout(Some(def.dial_timeout));
            let b = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_or_http();
            let b = match &def.server_name {
                Some(n) => {
                    let n = n.clone();
                    b.with_server_name_resolver(FixedName(n))
                }
                None => b,
            };
            if def.disable_http2 {
                b.enable_http1().wrap_connector(http)
            } else {
                b.enable_http1().enable_http2().wrap_connector(http)
            }
        };
        let client = PerWorker::new(|| {
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(def.idle_conn_timeout)
                .pool_max_idle_per_host(def.max_idle_per_host)
                .build(connector(tls.clone()))
        });
        let h2c = PerWorker::new(|| {
            Client::builder(TokioExecutor::new())
                .http2_only(true)
                .pool_idle_timeout(def.idle_conn_timeout)
                .build(connector(tls.clone()))
        });
        Ok(Transport {
            definition: def.clone(),
            client,
            h2c,
            h1: Arc::new(crate::h1::Pool::new(
                def.max_idle_per_host,
                def.idle_conn_timeout,
                def.dial_timeout,
            )),
            response_header_timeout: def.response_header_timeout,
        })
    }
}

/// A TLS client configuration that trusts `root_cas` (PEM bundles; the system's roots when
/// there are none), or nothing at all with `insecure_skip_verify` (signatures are still
/// checked); no client certificate. Shared by everything in edgeplane that dials TLS.
pub fn client_tls_config<B: AsRef<[u8]>>(
    root_cas: &[B],
    insecure_skip_verify: bool,
) -> Result<rustls::ClientConfig, String> {
    Ok(verifying_builder(root_cas, insecure_skip_verify)?.with_no_client_auth())
}

fn verifying_builder<B: AsRef<[u8]>>(
    root_cas: &[B],
    insecure_skip_verify: bool,
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    Ok(if insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        if root_cas.is_empty() {
            let native = rustls_native_certs::load_native_certs();
            for c in native.certs {
                let _ = roots.add(c);
            }
        }
        for pem in root_cas {
            for der in CertificateDer::pem_slice_iter(pem.as_ref()) {
                let der = der.map_err(|e| format!("unreadable root CA: {e}"))?;
                roots
                    .add(der)
                    .map_err(|e| format!("unusable root CA: {e}"))?;
            }
        }
        builder.with_root_certificates(roots)
    })
}

/// `serverName`: the name sent in SNI and verified, whatever the server's address.
#[derive(Debug)]
struct FixedName(String);

impl hyper_rustls::ResolveServerName for FixedName {
    fn resolve(
        &self,
        _uri: &http::Uri,
    ) -> Result<ServerName<'static>, Box<dyn std::error::Error + Sync + Send>> {
        Ok(ServerName::try_from(self.0.clone())?)
    }
}

/// `insecureSkipVerify`: accepts any certificate (signatures are still checked).
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
