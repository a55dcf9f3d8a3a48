//! `govern status`: the tree size, tree root and state root of a data dir or a running
//! node. `govern replay` of the log's export prints the same three.

use std::path::PathBuf;

use govern_core::checkpoint::Checkpoint;
use govern_core::note::NoteVerifier;
use govern_store::LogReader;

use crate::config::DEFAULT_DATA_DIR;
use crate::error::Result;
use govern_client::Client;

pub async fn run(url: Option<&str>, data_dir: Option<PathBuf>, json: bool) -> Result<()> {
    let (origin, size, root, state_root) = match url {
        Some(url) => {
            let client = Client::new(url)?;
            let info = client.log_info().await?;
            let verifier = NoteVerifier::parse(&info.verifier_key)?;
            let note = client.get_required("/checkpoint").await?;
            let (cp, _) = Checkpoint::open(&note, &info.origin, &verifier)?;
            let state: govern_client::wire::StateInfo = client.get_json("/v1/state").await?;
            // The state is after the last durable batch; the checkpoint may be newer. The
            // pair printed is the state's: its size and the tree root the node's own
            // checkpoint of that size signs.
            let root = if state.size == cp.size.0 {
                cp.root.to_hex()
            } else {
                state.root.clone()
            };
            (cp.origin, state.size, root, state.state_root)
        }
        None => {
            let dir = data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
            let storage = govern_api::datadir::open_read_only(&dir)?;
            let reader = LogReader::open(storage)?;
            let origin = reader.origin().to_string();
            let (latest, state) = tokio::task::spawn_blocking(move || {
                let mut state = govern_projections::state::State::new();
                let latest = reader.fold_tracked(&mut |e, i| state.apply(&e, i.0))?;
                Ok::<_, govern_store::StorageError>((latest, state))
            })
            .await
            .map_err(|e| e.to_string())??;
            (
                origin,
                latest.size.0,
                latest.root.to_hex(),
                state.root()?.to_hex(),
            )
        }
    };
    if json {
        println!(
            "{}",
            serde_json::json!({ "origin": origin, "size": size, "root": root, "state_root": state_root })
        );
    } else {
        println!("origin {origin}\nsize {size}\nroot {root}\nstate {state_root}");
    }
    Ok(())
}
