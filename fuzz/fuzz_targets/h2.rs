//! Fuzzes edgeplane's HTTP/2 server side: any bytes after the connection preface, through
//! one whole connection (frames, HPACK, streams, flow control, the request path answering
//! 404). It must never panic, and what it writes back must be well-formed frames.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let out = runtime().block_on(proxy::fuzzing::h2_exchange(data, Duration::ZERO));
    assert!(
        proxy::fuzzing::h2_frames(&out).is_some(),
        "the server wrote something that is not a sequence of frames"
    );
});
