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
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.20.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.1.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.0.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.0.0"),
    ],
    targets: [
        // System libraries: module maps only. Debian: libssh-dev, libargon2-dev.
        .systemLibrary(name: "CLibSSH", pkgConfig: "libssh", providers: [.apt(["libssh-dev"])]),
        .systemLibrary(name: "CArgon2", pkgConfig: "libargon2", providers: [.apt(["libargon2-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // FreeRDP 2 (Debian 12: freerdp2-dev): libfreerdp2, -client2, -server2 and winpr2.
        .systemLibrary(name: "CFreeRDP", pkgConfig: "freerdp-server2", providers: [.apt(["freerdp2-dev"])]),
        // The FreeRDP layer of the RDP gateway, in C: FreeRDP's API is callbacks in structs,
        // macros and its own threads (docs/decisions/0010).
        .target(
            name: "CGatehouseRDP",
            dependencies: ["CFreeRDP"],
            cSettings: [.unsafeFlags(["-I/usr/include/freerdp2", "-I/usr/include/winpr2", "-Wall"])],
            linkerSettings: [.linkedLibrary("freerdp2"), .linkedLibrary("freerdp-client2"),
                             .linkedLibrary("freerdp-server2"), .linkedLibrary("winpr2")]
        ),

        // Protocol-neutral domain: config, directory, grants, sessions, events.
        .target(
            name: "GatehouseCore",
            dependencies: [
                "CArgon2",
                "CZlib",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Crypto", package: "swift-crypto"),
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
        // The RDP listener, the asset leg and the desktop recording's capture.
        .target(
            name: "GatehouseRDP",
            dependencies: [
                "GatehouseCore",
                "CGatehouseRDP",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The HTTP API, live WebSocket streams and metrics.
        .target(
            name: "GatehouseWeb",
            dependencies: [
                "GatehouseCore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            resources: [.copy("Console")]
        ),
        .executableTarget(
            name: "gatehouse",
            dependencies: [
                "GatehouseCore",
                "GatehouseSSH",
                "GatehouseRDP",
                "GatehouseWeb",
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "GatehouseCoreTests", dependencies: ["GatehouseCore"]),
        .testTarget(name: "GatehouseRDPTests", dependencies: ["GatehouseRDP"]),
        .testTarget(
            name: "GatehouseWebTests",
            dependencies: ["GatehouseWeb", .product(name: "Yams", package: "Yams")]
        ),
    ]
)
