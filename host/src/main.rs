fn main() {
    std::process::exit(credpool::cli::main());
}
