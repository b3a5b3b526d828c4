//! `provider`: exports `ringos:demo/bytes@0.1.0` (see `wit/demo.wit`). Both
//! functions return their stream/future at once and do the work in a task
//! spawned after the return, so the caller sees results arrive over time.

wit_bindgen::generate!({
    path: "../wit",
    world: "provider",
});

use exports::ringos::demo::bytes::Guest;
use wit_bindgen::{spawn_local, FutureReader, StreamReader, StreamResult};

struct Provider;

/// Reads `data` in small chunks (several reads for anything but tiny inputs)
/// and calls `f` on each chunk.
async fn for_each_chunk(mut data: StreamReader<u8>, mut f: impl AsyncFnMut(Vec<u8>)) {
    loop {
        let (result, chunk) = data.read(Vec::with_capacity(16)).await;
        match result {
            StreamResult::Complete(_) => f(chunk).await,
            StreamResult::Dropped | StreamResult::Cancelled => break,
        }
    }
}

impl Guest for Provider {
    async fn sum(data: StreamReader<u8>) -> FutureReader<u32> {
        let (tx, rx) = wit_future::new(|| u32::MAX);
        spawn_local(async move {
            let mut sum = 0u32;
            for_each_chunk(data, async |chunk| {
                sum += chunk.iter().map(|&b| u32::from(b)).sum::<u32>();
            })
            .await;
            let _ = tx.write(sum).await;
        });
        rx
    }

    async fn transform(
        data: StreamReader<u8>,
        key: FutureReader<u32>,
    ) -> (StreamReader<u8>, FutureReader<u32>) {
        let (mut out_tx, out_rx) = wit_stream::new();
        let (count_tx, count_rx) = wit_future::new(|| u32::MAX);
        spawn_local(async move {
            let key = key.await as u8;
            let mut count = 0u32;
            for_each_chunk(data, async |chunk| {
                count += chunk.len() as u32;
                let out: Vec<u8> = chunk.iter().map(|b| b.wrapping_add(key)).collect();
                let rest = out_tx.write_all(out).await;
                assert!(
                    rest.is_empty(),
                    "the reader of transform's output went away"
                );
            })
            .await;
            drop(out_tx);
            let _ = count_tx.write(count).await;
        });
        (out_rx, count_rx)
    }
}

export!(Provider);
