fn main() {
    // SAFETY: nothing has started a thread yet; the key leaves the
    // environment before any child process or library can see it.
    unsafe { credpool::crypto::take_key_from_env() };
    std::process::exit(credpool::cli::main());
}
