fn main() -> std::process::ExitCode {
    manifold::cli::main()
}
