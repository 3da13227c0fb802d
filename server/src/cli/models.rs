//! `cria models`: the known models, and where each one's file was found.

use cria::models::{load_catalogue, resolve, CriaHome, SearchPaths};

/// Runs the verb.
pub fn run() -> anyhow::Result<()> {
    let home = CriaHome::from_env()?;
    let catalogue = load_catalogue(&home)?;
    let search = SearchPaths::from_env(&home)?;
    for config in catalogue.iter() {
        let status = match resolve(&config.name, &search, &catalogue) {
            Ok(found) => found.gguf.display().to_string(),
            Err(_) => format!("not downloaded (cria pull {})", config.name),
        };
        println!("{:32} {:6} {}", config.name, config.architecture, status);
    }
    Ok(())
}
