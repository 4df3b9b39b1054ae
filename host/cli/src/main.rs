//! The `tiergate` command line.

use std::process::ExitCode;

fn main() -> ExitCode {
    // Like other Unix tools, end quietly when the reader of stdout goes away
    // (`tiergate eval ... | head`) instead of failing on every print.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of one signal at start-up,
    // before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // A host compiling a tenant's policy in a child process runs this
    // binary again to do it (see `tiergate_runtime::CompileLimits::child`).
    if std::env::args_os().nth(1).as_deref() == Some(tiergate_runtime::COMPILE_SUBCOMMAND.as_ref())
    {
        return tiergate_runtime::compile_child_main();
    }
    tiergate_cli::main()
}
