//! Where each file of the data directory lives (see ARCHITECTURE.md, "On-disk format").

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Paths {
    pub root: PathBuf,
}

impl Paths {
    pub fn new(root: &Path) -> Self {
        Paths {
            root: root.to_path_buf(),
        }
    }
    pub fn journal_dir(&self) -> PathBuf {
        self.root.join("journal")
    }
    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }
    pub fn users_dir(&self) -> PathBuf {
        self.root.join("users")
    }
    /// User names are validated by `canonical_user_name` to be safe directory names.
    pub fn user_dir(&self, user: &str) -> PathBuf {
        self.users_dir().join(user)
    }
    pub fn user_index(&self, user: &str) -> PathBuf {
        self.user_dir(user).join("index.sqlite")
    }
    pub fn server_index(&self) -> PathBuf {
        self.root.join("server.sqlite")
    }
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("store.lock")
    }
}
