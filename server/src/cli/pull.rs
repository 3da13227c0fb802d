//! `cria pull NAME`: downloads a known model's GGUF file from the Hugging Face
//! hub (for users with internet access), verifying its sha256 when known.

use anyhow::Context;
use cria::models::{load_catalogue, pull, CriaHome};

/// Arguments of `cria pull`.
#[derive(clap::Args)]
pub struct Args {
    /// Model config name (see `cria models`).
    name: String,
}

/// Runs the verb.
pub fn run(args: Args) -> anyhow::Result<()> {
    let home = CriaHome::from_env()?;
    let catalogue = load_catalogue(&home)?;
    let config = catalogue.get(&args.name).with_context(|| {
        format!("unknown model `{}`; known models: {}", args.name, catalogue.names().join(", "))
    })?;
    let dest = home.models_dir();
    std::fs::create_dir_all(&dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let path = pull(config, &dest)?;
    println!("{}", path.display());
    Ok(())
}
