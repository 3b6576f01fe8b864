import Foundation
import XCTest
@testable import GatehouseCore

final class RDPConfigTests: XCTestCase {
    let hash = PasswordHasher.hash(password: "pw")

    func config(listen: String = #"listen: { ssh: "127.0.0.1:2222", rdp: "0.0.0.0:3389" }"#, rdp: String, asset: String) -> String {
        """
        data_dir: var
        \(listen)
        \(rdp)
        users:
          - name: alice
            password_hash: "\(hash)"
        assets:
          - name: desk01
            host: 10.0.0.7
        \(asset)
            accounts:
              - { name: Administrator, password_env: DESK01_PASSWORD }
        grants:
          - { users: [alice], assets: [desk01] }
        """
    }

    func parse(_ yaml: String) throws(ConfigError) -> GatehouseConfig {
        try ConfigLoader(environment: [:]).parse(yaml: yaml, path: "/etc/gatehouse/gatehouse.yaml")
    }

    func problems(_ yaml: String) -> [String] {
        do {
            _ = try parse(yaml)
            XCTFail("expected problems")
            return []
        } catch {
            return error.problems.map(\.description)
        }
    }

    func testRDPListenerCertificateAndAssetPort() throws {
        let c = try parse(config(rdp: "rdp: { certificate: certs/rdp.crt, private_key: certs/rdp.key, nla: true }",
                                 asset: "    rdp_port: 3390\n    rdp_certificate: \"\(Array(repeating: "AB", count: 32).joined(separator: ":"))\""))
        XCTAssertEqual(c.listen.rdp, HostPort(host: "0.0.0.0", port: 3389))
        XCTAssertEqual(c.rdp, GatehouseConfig.RDP(certificate: "/etc/gatehouse/certs/rdp.crt", privateKey: "/etc/gatehouse/certs/rdp.key", nla: true))
        XCTAssertEqual(c.assets[0].rdpPort, 3390)
        // Stored as FreeRDP prints fingerprints: lower case with colons.
        XCTAssertEqual(c.assets[0].rdpCertificate, Array(repeating: "ab", count: 32).joined(separator: ":"))
    }

    func testRDPIsOffUnlessListenedFor() throws {
        let c = try parse(config(listen: #"listen: { ssh: "127.0.0.1:2222" }"#, rdp: "", asset: ""))
        XCTAssertNil(c.listen.rdp)
        XCTAssertNil(c.rdp)
        XCTAssertNil(c.assets[0].rdpPort)
    }

    func testListenerWithoutCertificateIsAProblem() {
        let found = problems(config(rdp: "", asset: ""))
        XCTAssertTrue(found.contains { $0.contains("listen.rdp needs rdp.certificate and rdp.private_key") }, "\(found)")
    }

    func testBadPortAndFingerprintAreProblems() {
        let found = problems(config(rdp: "rdp: { certificate: a.crt, private_key: a.key }",
                                    asset: "    rdp_port: 70000\n    rdp_certificate: \"SHA256:abc\""))
        XCTAssertTrue(found.contains { $0.contains("rdp_port") }, "\(found)")
        XCTAssertTrue(found.contains { $0.contains("rdp_certificate") && $0.contains("SHA-256") }, "\(found)")
    }

    func testAccountPasswordForRDP() {
        XCTAssertEqual(try GatehouseConfig.Credential.passwordEnv("P").password(environment: ["P": "s3cret"]).get(), "s3cret")
        if case .success = GatehouseConfig.Credential.passwordEnv("P").password(environment: [:]) { XCTFail("unset variable") }
        guard case .failure(let error) = GatehouseConfig.Credential.privateKeyFile("/k").password() else { return XCTFail("a key is not a password") }
        XCTAssertTrue(error.reason.contains("RDP needs a password"))
    }

    func testOneTimeRDPPasswordStore() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gh-rdp-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try SQLiteSessionStore(path: dir.path + ".sqlite")
        let now = Date()
        try store.setRDPPassword(user: "alice", ntHash: Data(repeating: 1, count: 16), created: now, expires: now.addingTimeInterval(60))
        try store.setRDPPassword(user: "alice", ntHash: Data(repeating: 2, count: 16), created: now, expires: now.addingTimeInterval(60))
        XCTAssertEqual(try store.rdpPassword(user: "alice", now: now), Data(repeating: 2, count: 16), "a new one replaces the old")
        XCTAssertNil(try store.rdpPassword(user: "alice", now: now.addingTimeInterval(61)), "expired")
        XCTAssertNil(try store.rdpPassword(user: "bob", now: now))
        try store.removeRDPPassword(user: "alice")
        XCTAssertNil(try store.rdpPassword(user: "alice", now: now))
    }
}
