//! `govern status`: the tree size and root of a data dir or a running node.

use std::path::PathBuf;

use govern_core::checkpoint::Checkpoint;
use govern_core::note::NoteVerifier;
use govern_store::LogReader;

use crate::client::Client;
use crate::config::DEFAULT_DATA_DIR;
use crate::demo::Result;

pub async fn run(url: Option<&str>, data_dir: Option<PathBuf>, json: bool) -> Result<()> {
    let (origin, size, root) = match url {
        Some(url) => {
            let client = Client::new(url)?;
            let info = client.log_info().await?;
            let verifier = NoteVerifier::parse(&info.verifier_key)?;
            let note = client.get_required("/checkpoint").await?;
            let (cp, _) = Checkpoint::open(&note, &info.origin, &verifier)?;
            (cp.origin, cp.size.0, cp.root.to_hex())
        }
        None => {
            let dir = data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
            let storage = govern_store::RocksStorage::open_read_only(&dir.join("db"))
                .map_err(|e| format!("{}: {e}", dir.display()))?;
            let reader = LogReader::open(storage)?;
            let latest = reader.latest();
            (
                reader.origin().to_string(),
                latest.size.0,
                latest.root.to_hex(),
            )
        }
    };
    if json {
        println!(
            "{}",
            serde_json::json!({ "origin": origin, "size": size, "root": root })
        );
    } else {
        println!("origin {origin}\nsize {size}\nroot {root}");
    }
    Ok(())
}
