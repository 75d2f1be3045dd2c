//! The `ses-smtp-rotator` binary: the Lambda runtime when `AWS_LAMBDA_RUNTIME_API` is set,
//! otherwise the command-line tool.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        ses_smtp_rotator::lambda::main()
    } else {
        ses_smtp_rotator::cli::main()
    }
}
