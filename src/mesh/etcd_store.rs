//! The etcd backend of [`Store`], on the `etcd-client` crate (etcd's v3
//! gRPC API). Every call is bounded by [`OP_TIMEOUT`], so an unreachable
//! etcd shows as an error within seconds instead of a hung agent.
use super::store::{
    Kv, LeaseId, PutIf, Store, StoreError, StoreResult, Watch, WatchBatch, WatchEvent,
};
use crate::config::MeshConfig;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity,
    LeaseKeepAliveStream, LeaseKeeper, PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse,
    WatchOptions, WatchStream,
};
use std::future::Future;
use std::time::Duration;

/// Longest any single store call may take.
pub const OP_TIMEOUT: Duration = Duration::from_secs(3);

pub struct EtcdStore {
    client: Client,
    keeper: Option<(LeaseId, LeaseKeeper, LeaseKeepAliveStream)>,
}

async fn bounded<T, E: std::fmt::Display>(
    what: &str,
    f: impl Future<Output = Result<T, E>>,
) -> StoreResult<T> {
    match tokio::time::timeout(OP_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(StoreError::new(format!("etcd {what}: {e}"))),
        Err(_) => Err(StoreError::new(format!(
            "etcd {what}: no answer within {} s",
            OP_TIMEOUT.as_secs()
        ))),
    }
}

fn read(path: &std::path::Path, what: &str) -> StoreResult<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| StoreError::new(format!("cannot read {what} {}: {e}", path.display())))
}

/// Connection options from `[mesh]`: TLS (CA, client certificate) when
/// configured or when an endpoint is https, and etcd auth.
pub fn connect_options(cfg: &MeshConfig) -> StoreResult<ConnectOptions> {
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(OP_TIMEOUT)
        // HTTP/2 pings find a silent (stopped, partitioned) etcd under an
        // idle watch.
        .with_keep_alive(Duration::from_secs(3), Duration::from_secs(2))
        .with_keep_alive_while_idle(true);
    let https = cfg.endpoints.iter().any(|e| e.starts_with("https://"));
    if https || cfg.ca_file.is_some() || cfg.cert_file.is_some() {
        let mut tls = TlsOptions::new();
        match &cfg.ca_file {
            Some(p) => tls = tls.ca_certificate(Certificate::from_pem(read(p, "ca_file")?)),
            None => tls = tls.with_native_roots(),
        }
        if let (Some(c), Some(k)) = (&cfg.cert_file, &cfg.key_file) {
            tls = tls.identity(Identity::from_pem(
                read(c, "cert_file")?,
                read(k, "key_file")?,
            ));
        }
        opts = opts.with_tls(tls);
    }
    if let (Some(user), Some(pw)) = (&cfg.username, &cfg.password_file) {
        let pw = String::from_utf8(read(pw, "password_file")?)
            .map_err(|_| StoreError::new("password_file is not UTF-8"))?;
        opts = opts.with_user(user.clone(), pw.trim_end_matches(['\r', '\n']).to_string());
    }
    Ok(opts)
}

impl EtcdStore {
    /// Connects to the endpoints of `[mesh]`.
    pub async fn connect(cfg: &MeshConfig) -> StoreResult<EtcdStore> {
        let opts = connect_options(cfg)?;
        let client = bounded("connect", Client::connect(&cfg.endpoints, Some(opts))).await?;
        Ok(EtcdStore {
            client,
            keeper: None,
        })
    }
}

fn kv_of(kv: &etcd_client::KeyValue) -> Kv {
    Kv {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    }
}

impl Store for EtcdStore {
    type Watch = EtcdWatch;

    async fn list(&mut self, prefix: &str) -> StoreResult<(Vec<Kv>, i64)> {
        let resp = bounded(
            "list",
            self.client
                .get(prefix, Some(GetOptions::new().with_prefix())),
        )
        .await?;
        let rev = resp.header().map_or(0, |h| h.revision());
        Ok((resp.kvs().iter().map(kv_of).collect(), rev))
    }

    async fn watch(&mut self, prefix: &str, from_revision: i64) -> StoreResult<EtcdWatch> {
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from_revision);
        let stream = bounded("watch", self.client.watch(prefix, Some(opts))).await?;
        Ok(EtcdWatch { stream })
    }

    async fn grant(&mut self, ttl: u32) -> StoreResult<LeaseId> {
        let resp = bounded("lease grant", self.client.lease_grant(i64::from(ttl), None)).await?;
        Ok(resp.id())
    }

    async fn keep_alive(&mut self, lease: LeaseId) -> StoreResult<bool> {
        if self.keeper.as_ref().map(|k| k.0) != Some(lease) {
            self.keeper = None;
            let opened =
                tokio::time::timeout(OP_TIMEOUT, self.client.lease_keep_alive(lease)).await;
            let (keeper, stream) = match opened {
                Ok(Ok(ks)) => ks,
                // etcd-client reports an expired lease (TTL 0 in the first
                // answer) as this error: the lease is gone, the store is up.
                Ok(Err(etcd_client::Error::LeaseKeepAliveError(m))) if m == "lease not found" => {
                    return Ok(false)
                }
                Ok(Err(e)) => return Err(StoreError::new(format!("etcd lease keep-alive: {e}"))),
                Err(_) => {
                    return Err(StoreError::new(format!(
                        "etcd lease keep-alive: no answer within {} s",
                        OP_TIMEOUT.as_secs()
                    )))
                }
            };
            self.keeper = Some((lease, keeper, stream));
        }
        let (_, keeper, stream) = self.keeper.as_mut().expect("set above");
        let r = bounded("lease keep-alive", async {
            keeper.keep_alive().await?;
            stream.message().await
        })
        .await;
        match r {
            Ok(Some(resp)) => Ok(resp.ttl() > 0),
            Ok(None) => {
                self.keeper = None;
                Err(StoreError::new("etcd lease keep-alive: stream closed"))
            }
            Err(e) => {
                self.keeper = None;
                Err(e)
            }
        }
    }

    async fn put_if(
        &mut self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
        expect_create_revision: i64,
    ) -> StoreResult<PutIf> {
        let put_opts = lease.map(|l| PutOptions::new().with_lease(l));
        let txn = Txn::new()
            .when([Compare::create_revision(
                key,
                CompareOp::Equal,
                expect_create_revision,
            )])
            .and_then([TxnOp::put(key, value, put_opts)])
            .or_else([TxnOp::get(key, None)]);
        let resp = bounded("txn", self.client.txn(txn)).await?;
        if resp.succeeded() {
            return Ok(PutIf::Written);
        }
        let current = resp.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(g) => Some(g.kvs().first().map(kv_of)),
            _ => None,
        });
        Ok(PutIf::Refused(current.flatten()))
    }

    async fn delete(&mut self, key: &str) -> StoreResult<()> {
        bounded("delete", self.client.delete(key, None)).await?;
        Ok(())
    }
}

/// An open etcd watch.
pub struct EtcdWatch {
    stream: WatchStream,
}

impl Watch for EtcdWatch {
    async fn next(&mut self) -> StoreResult<WatchBatch> {
        loop {
            let msg = self
                .stream
                .message()
                .await
                .map_err(|e| StoreError::new(format!("etcd watch: {e}")))?;
            let Some(resp) = msg else {
                return Err(StoreError::new("etcd watch: stream closed"));
            };
            if resp.canceled() {
                if resp.compact_revision() > 0 {
                    return Ok(WatchBatch::Compacted);
                }
                return Err(StoreError::new(format!(
                    "etcd watch canceled: {}",
                    resp.cancel_reason()
                )));
            }
            let events: Vec<WatchEvent> = resp
                .events()
                .iter()
                .filter_map(|ev| {
                    let kv = ev.kv()?;
                    Some(match ev.event_type() {
                        EventType::Put => WatchEvent::Put(kv_of(kv)),
                        EventType::Delete => WatchEvent::Delete {
                            key: String::from_utf8_lossy(kv.key()).into_owned(),
                            mod_revision: kv.mod_revision(),
                        },
                    })
                })
                .collect();
            if !events.is_empty() {
                return Ok(WatchBatch::Events(events));
            }
        }
    }
}

/// Connects an [`EtcdStore`] per agent session.
pub struct EtcdConnector(pub MeshConfig);

impl super::agent::Connector for EtcdConnector {
    type S = EtcdStore;
    async fn connect(&mut self) -> StoreResult<EtcdStore> {
        EtcdStore::connect(&self.0).await
    }
}
