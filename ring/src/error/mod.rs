//! Error types, one small enum per operation, each with a message a user can act on: setting
//! up (`setup`) and moving messages (`message`).

mod message;
mod setup;

pub use message::{
    ClaimError, CommitError, Corruption, RecvError, SendError, TryClaimError, TryRecvError,
    TrySendError,
};
pub use setup::{AttachError, ConfigError, CreateError, OpenError, RemoveError};
pub(crate) use setup::{GeometryField, OsError};
