//! The daemon's saved state (`<home>/state.json`): which config files are loaded
//! with which `--env`, and which apps a user stopped or deleted. Written
//! atomically after every change, read when `l4ctl start` restores the apps of a
//! daemon that died. Holds no environment values. Trusted only when it is the
//! daemon's user's own file (see [`crate::trust`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil::atomic_write;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedState {
    pub schema: u32,
    pub sources: Vec<Source>,
    pub stopped: BTreeSet<String>,
    pub deleted: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub config: PathBuf,
    pub env: Option<String>,
}

impl SavedState {
    pub fn path(home: &Path) -> PathBuf {
        crate::wire::home::Paths::saved_state(home)
    }

    /// The saved state, or an empty one when there is none (or it is not valid JSON:
    /// logged). A file that is a symbolic link, is not the daemon's user's, or that
    /// group or others could have written is refused: it names programs to run.
    pub fn load(home: &Path) -> Result<SavedState, crate::trust::Refused> {
        let path = Self::path(home);
        let Some(mut file) = crate::trust::open_owned(&path, "saved state")? else { return Ok(SavedState::default()) };
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut bytes).map_err(|source| crate::trust::Refused::Io {
            what: "saved state",
            path: path.clone(),
            source,
        })?;
        Ok(serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), cause = %e, "ignoring unreadable saved state");
            SavedState::default()
        }))
    }

    pub fn save(&self, home: &Path) -> std::io::Result<()> {
        let mut json = serde_json::to_vec_pretty(&SavedState { schema: 1, ..self.clone() })?;
        json.push(b'\n');
        atomic_write(&Self::path(home), &json, 0o600)
    }

    pub fn add_source(&mut self, config: &Path, env: Option<String>) {
        self.sources.retain(|s| s.config != config);
        self.sources.push(Source { config: config.to_path_buf(), env });
    }
}
