//! The result every command of the CLI returns: its error is a message, printed by `main`.

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;
