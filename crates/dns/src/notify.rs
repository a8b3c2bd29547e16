//! NOTIFY (RFC 1996): tells configured secondaries that a zone changed, so that they transfer it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use model::record::RecordData;
use model::{DomainName, HostedZoneId};
use store::Store;
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::wire::{Header, MessageWriter, Rcode, Section, CLASS_IN, OPCODE_NOTIFY, TYPE_SOA};

/// Attempts per secondary and change before giving up.
const ATTEMPTS: u32 = 5;

/// Sends a NOTIFY for every served zone at start, then for every zone whose serial changes.
pub(crate) async fn run(store: Store, targets: Vec<SocketAddr>, mut stop: watch::Receiver<bool>) {
    let mut generations = store.subscribe();
    let mut notified: HashMap<HostedZoneId, u32> = HashMap::new();
    loop {
        let snapshot = store.snapshot();
        let mut seen = Vec::new();
        for zone in snapshot.serving.values() {
            let z = zone.zone();
            seen.push(z.id.clone());
            let serial = z.serial();
            if notified.get(&z.id) == Some(&serial) {
                continue;
            }
            notified.insert(z.id.clone(), serial);
            let Some((soa, ttl)) = z.soa() else { continue };
            let soa = RecordData::Soa(soa.clone());
            for target in &targets {
                tokio::spawn(notify_one(
                    z.name.clone(),
                    ttl.seconds(),
                    soa.clone(),
                    *target,
                    serial,
                ));
            }
        }
        notified.retain(|id, _| seen.contains(id));
        tokio::select! {
            _ = crate::server::stopped(&mut stop) => return,
            r = generations.changed() => if r.is_err() { return },
        }
    }
}

async fn notify_one(zone: DomainName, ttl: u32, soa: RecordData, target: SocketAddr, serial: u32) {
    let bind: SocketAddr = if target.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let sock = match UdpSocket::bind(bind).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot open a socket for NOTIFY");
            return;
        }
    };
    let id = (store::random_u64() & 0xffff) as u16;
    let header = Header {
        id,
        is_response: false,
        opcode: OPCODE_NOTIFY,
        recursion_desired: false,
        checking_disabled: false,
        qdcount: 1,
        ancount: 0,
        nscount: 0,
        arcount: 0,
    };
    let mut w = MessageWriter::new(Vec::new(), &header, true, Rcode::NoError);
    // A request, not a response: clear QR after the writer set it.
    w.question(zone.wire(), TYPE_SOA, CLASS_IN);
    w.record(Section::Answer, &zone, ttl, &soa);
    let mut msg = w.finish();
    msg[2] &= 0x7f;
    let mut buf = [0u8; 512];
    for attempt in 1..=ATTEMPTS {
        if let Err(e) = sock.send_to(&msg, target).await {
            tracing::warn!(error = %e, %target, %zone, "NOTIFY send failed");
        }
        let wait = Duration::from_millis(500 * u64::from(attempt));
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await {
                Ok(Ok((n, from))) if from == target => {
                    if let Ok(h) = Header::parse(&buf[..n]) {
                        if h.id == id && h.is_response && h.opcode == OPCODE_NOTIFY {
                            let rcode = buf[3] & 0x0f;
                            tracing::info!(%target, %zone, serial, rcode, "NOTIFY acknowledged");
                            return;
                        }
                    }
                }
                Ok(_) => continue,
                Err(_) => break,
            }
        }
    }
    tracing::warn!(%target, %zone, serial, "NOTIFY not acknowledged after {ATTEMPTS} attempts");
}
