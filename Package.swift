// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "Gatehouse",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "gatehouse", targets: ["gatehouse"]),
        // For benchmarks/micro, which measures the recorder on its own.
        .library(name: "GatehouseCore", targets: ["GatehouseCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.0.0"),
    ],
    targets: [
        // System libraries: module maps only. Debian: libssh-dev, libargon2-dev.
        .systemLibrary(name: "CLibSSH", pkgConfig: "libssh", providers: [.apt(["libssh-dev"])]),
        .systemLibrary(name: "CArgon2", pkgConfig: "libargon2", providers: [.apt(["libargon2-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),

        // Protocol-neutral domain: config, directory, grants, sessions, events.
        .target(
            name: "GatehouseCore",
            dependencies: [
                "CArgon2",
                "CZlib",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        // libssh on both legs, the SSH relay and the asset menu.
        .target(
            name: "GatehouseSSH",
            dependencies: [
                "GatehouseCore",
                "CLibSSH",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "gatehouse",
            dependencies: [
                "GatehouseCore",
                "GatehouseSSH",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "GatehouseCoreTests", dependencies: ["GatehouseCore"]),
    ]
)
