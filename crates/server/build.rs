//! Compiles the gRPC protos with protox (a protobuf compiler in Rust), so no `protoc` install is
//! needed, and generates the tonic service and client code from the descriptors.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const PROTO: &str = "proto/cairn/inventory/v1/inventory.proto";
    println!("cargo:rerun-if-changed={PROTO}");
    let descriptors = protox::compile(["cairn/inventory/v1/inventory.proto"], ["proto"])?;
    tonic_prost_build::configure()
        // The generated client is generic over its channel: no tonic transport needed for it.
        .build_transport(false)
        .compile_fds(descriptors)?;
    Ok(())
}
