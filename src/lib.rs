//! ses-smtp-rotator: rotates Amazon SES SMTP credentials kept in AWS Secrets Manager.
//!
//! The library holds all the logic so that tests reach it; `main.rs` only picks the face:
//! the Lambda runtime loop (when `AWS_LAMBDA_RUNTIME_API` is set) or the command line.
//!
//! - [`password`]: the SES SMTP password derivation (pure).
//! - [`secret`]: the secret document.
//! - [`config`]: the function's configuration from the environment.
//! - [`error`]: the one error type, with stable error types for the runtime.
//! - [`event`]: the rotation event, parsed at the edge into a typed step.
//! - [`endpoint`]: SES SMTP host forms and the destination allow-list.
//! - [`identify`]: what a given password is (for diagnosis).
//! - [`ownership`]: which of a user's keys a rotation may delete (tags, attempts, the rule).
//! - [`metrics`]: the invocation's CloudWatch EMF line.
//! - [`aws`]: Secrets Manager and IAM calls the steps use.
//! - [`smtp`]: one SMTP login (and optional send) against SES.
//! - [`roots`]: the root certificates SMTP and the AWS SDK trust (the system's CA bundle).
//! - [`steps`]: the four rotation steps, one module each, and the preamble they share.
//! - [`lambda`]: the Lambda handler and runtime loop.
//! - [`doctor`]: `ses-smtp-rotator doctor`, why SES answers 535.
//! - [`cli`]: the command-line face.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub(crate) mod aws;
pub mod cli;
pub(crate) mod config;
pub(crate) mod doctor;
pub(crate) mod endpoint;
pub(crate) mod error;
pub(crate) mod event;
pub(crate) mod identify;
pub mod lambda;
pub(crate) mod maintenance;
pub(crate) mod metrics;
pub(crate) mod ownership;
pub mod password;
pub(crate) mod record;
pub(crate) mod roots;
pub(crate) mod secret;
pub(crate) mod smtp;
pub(crate) mod steps;
