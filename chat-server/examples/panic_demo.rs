//! Used by the integration tests (tests/telemetry.rs): installs the chat server's panic
//! hook, panics inside a tokio task (tokio catches it and the process goes on), prints
//! `alive`, then panics on the main thread. Run it to see the structured panic lines:
//! `cargo run -p layer4-chat-server --example panic_demo`.

fn main() {
    layer4_chat_server::telemetry::install_panic_hook();
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build() else {
        std::process::exit(3);
    };
    runtime.block_on(async {
        let joined = tokio::spawn(async { panic!("boom in a task") }).await;
        if joined.is_err() {
            println!("alive");
        }
    });
    panic!("boom on main");
}
