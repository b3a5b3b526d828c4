//! `hello`: a WASI 0.3 command that writes `Hello, WASI!\n` to stdout
//! through `wasi:cli/stdout.write-via-stream`, and nothing else.

wasip3::cli::command::export!(Hello);

struct Hello;

impl wasip3::exports::cli::run::Guest for Hello {
    async fn run() -> Result<(), ()> {
        let (mut tx, rx) = wasip3::wit_stream::new();
        // `write-via-stream` is a plain func returning a future: the host
        // takes the readable end now and reads it while we write.
        let done = wasip3::cli::stdout::write_via_stream(rx);
        let rest = tx.write_all(b"Hello, WASI!\n".to_vec()).await;
        assert!(rest.is_empty());
        drop(tx);
        done.await.map_err(|_| ())
    }
}
