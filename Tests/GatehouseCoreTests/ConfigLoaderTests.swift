import Foundation
import XCTest
@testable import GatehouseCore

final class ConfigLoaderTests: XCTestCase {
    let hash = PasswordHasher.hash(password: "pw")

    func parse(_ yaml: String, env: [String: String] = [:]) throws(ConfigError) -> GatehouseConfig {
        try ConfigLoader(environment: env).parse(yaml: yaml, path: "/etc/gatehouse/gatehouse.yaml")
    }

    func problems(_ yaml: String, env: [String: String] = [:]) -> [ConfigProblem] {
        do {
            _ = try parse(yaml, env: env)
            XCTFail("expected problems")
            return []
        } catch {
            return error.problems
        }
    }

    func testValidConfigResolvesRelativePathsAgainstTheConfigDirectory() throws {
        let config = try parse("""
        data_dir: var
        listen: { ssh: "127.0.0.1:2222" }
        users:
          - name: alice
            password_hash: "\(hash)"
        assets:
          - name: web01
            host: 10.0.0.5
            accounts:
              - { name: deploy, private_key_file: keys/deploy }
        grants:
          - { users: [alice], assets: [web01], accounts: [deploy] }
        """)
        XCTAssertEqual(config.dataDir, "/etc/gatehouse/var")
        XCTAssertEqual(config.listen.ssh, HostPort(host: "127.0.0.1", port: 2222))
        XCTAssertEqual(config.assets[0].sshPort, 22)
        XCTAssertEqual(config.assets[0].accounts[0].credential, .privateKeyFile("/etc/gatehouse/keys/deploy"))
        XCTAssertEqual(config.users[0].role, .user)
    }

    func testEveryProblemIsReportedWithItsLineAndColumn() {
        let found = problems("""
        data_dir: var
        listn: { ssh: "127.0.0.1:2222" }
        users:
          - name: alice
            password_hash: "hunter2"
        assets:
          - name: web01
            host: 10.0.0.5
            ssh_port: 70000
            accounts:
              - { name: deploy, password: "s3cret" }
        grants:
          - { users: [mallory], assets: [web01] }
        """)
        let text = found.map(\.description)
        XCTAssertTrue(text.contains { $0.contains("gatehouse.yaml:2:1: listn: unknown key") }, "\(text)")
        XCTAssertTrue(text.contains { $0.contains(":5:20: users[0].password_hash: not an argon2id hash") }, "\(text)")
        XCTAssertTrue(text.contains { $0.contains("assets[0].ssh_port: expected a whole number") }, "\(text)")
        XCTAssertTrue(text.contains { $0.contains("assets[0].accounts[0].password: plaintext passwords are not accepted") }, "\(text)")
        XCTAssertTrue(text.contains { $0.contains("grants[0].users[0]: no user named \"mallory\"") }, "\(text)")
        XCTAssertTrue(found.allSatisfy { $0.line != nil }, "\(text)")
    }

    func testMalformedYAMLIsOneClearProblem() {
        let found = problems("users: [\n  - name: x\n")
        XCTAssertEqual(found.count, 1)
        XCTAssertTrue(found[0].message.hasPrefix("not valid YAML"))
    }

    func testPasswordHashFromEnvironment() throws {
        let yaml = """
        users:
          - { name: demo, password_hash_env: DEMO_HASH }
        """
        XCTAssertEqual(try parse(yaml, env: ["DEMO_HASH": hash]).users[0].passwordHash, hash)
        XCTAssertTrue(problems(yaml).contains { $0.message.contains("DEMO_HASH is not set") })
    }

    func testExampleConfigIsValid() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../config/gatehouse.yaml").standardizedFileURL.path
        let config = try ConfigLoader(environment: ["GATEHOUSE_DEMO_PASSWORD_HASH": hash]).load(path: path)
        XCTAssertEqual(Directory(config: config).targets(for: "demo").map(\.label), ["gatehouse-demo@demo-asset", "gatehouse-demo@demo-desktop"])
        XCTAssertNotNil(config.listen.rdp)
        XCTAssertEqual(config.assets.first { $0.name == "demo-desktop" }?.rdpPort, 3390)
        XCTAssertEqual(config.assets.map(\.ssh), [true, false], "an asset with only an rdp_port takes no SSH sessions")
    }
}
