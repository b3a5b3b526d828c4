//! `consumer`: imports `ringos:demo/bytes@0.1.0` (exported by `provider`) and
//! exports `wasi:cli/run`. `run` drives both functions with streams and
//! futures going both ways and prints two checkable lines:
//!
//! ```text
//! sum=5050 len=100
//! transform=IBM count=3
//! ```

wit_bindgen::generate!({
    path: "../wit",
    world: "consumer",
});

use futures::future::{join, join3};
use ringos::demo::bytes;

wasip3::cli::command::export!(Consumer);

struct Consumer;

/// `sum` over the bytes 1..=100, fed in one write; the provider reads them
/// in several chunks.
async fn sum() -> (u32, usize) {
    let data: Vec<u8> = (1..=100).collect();
    let len = data.len();
    let (mut tx, rx) = wit_stream::new();
    let call = async { bytes::sum(rx).await.await };
    let feed = async move {
        let rest = tx.write_all(data).await;
        assert!(rest.is_empty());
    };
    let (sum, ()) = join(call, feed).await;
    (sum, len)
}

/// `transform("HAL", key 1)`: the call, the output read and both inputs all
/// run concurrently so no order of the provider's reads can deadlock.
async fn transform() -> (Vec<u8>, u32) {
    let (mut data_tx, data_rx) = wit_stream::new();
    let (key_tx, key_rx) = wit_future::new(|| 0u32);
    let call = async {
        let (out, count) = bytes::transform(data_rx, key_rx).await;
        let out = out.collect().await;
        (out, count.await)
    };
    let feed_data = async move {
        let rest = data_tx.write_all(b"HAL".to_vec()).await;
        assert!(rest.is_empty());
    };
    let feed_key = async move {
        key_tx.write(1).await.unwrap();
    };
    let (result, (), ()) = join3(call, feed_data, feed_key).await;
    result
}

async fn print(text: String) -> Result<(), ()> {
    let (mut tx, rx) = wasip3::wit_stream::new();
    let done = wasip3::cli::stdout::write_via_stream(rx);
    let rest = tx.write_all(text.into_bytes()).await;
    assert!(rest.is_empty());
    drop(tx);
    done.await.map_err(|_| ())
}

impl wasip3::exports::cli::run::Guest for Consumer {
    async fn run() -> Result<(), ()> {
        let (sum, len) = sum().await;
        let (out, count) = transform().await;
        let out = String::from_utf8_lossy(&out);
        print(format!(
            "sum={sum} len={len}\ntransform={out} count={count}\n"
        ))
        .await
    }
}
