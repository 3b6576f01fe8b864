import XCTest
@testable import GatehouseCore

final class DirectoryTests: XCTestCase {
    func testLoginNameForms() {
        XCTAssertEqual(LoginName(parsing: "alice"), LoginName(user: "alice"))
        XCTAssertEqual(LoginName(parsing: "alice@web01"), LoginName(user: "alice", asset: "web01"))
        XCTAssertEqual(LoginName(parsing: "alice@deploy@web01"), LoginName(user: "alice", account: "deploy", asset: "web01"))
        XCTAssertEqual(LoginName(parsing: "alice#deploy#web01"), LoginName(user: "alice", account: "deploy", asset: "web01"))
        XCTAssertNil(LoginName(parsing: "alice@@web01"))
        XCTAssertNil(LoginName(parsing: "a@b@c@d"))
        XCTAssertNil(LoginName(parsing: ""))
    }

    func directory() throws -> Directory {
        let config = try ConfigLoader(environment: [:]).parse(yaml: """
        users:
          - { name: alice, authorized_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFHY17t838pkXbUM9reewCc6VahsBhCuVyrNOEzIO7mJ alice"] }
          - { name: bob, authorized_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFHY17t838pkXbUM9reewCc6VahsBhCuVyrNOEzIO7mJ bob"] }
        assets:
          - name: web01
            host: 10.0.0.5
            accounts: [{ name: deploy, password_env: A }, { name: root, password_env: B }]
          - name: db01
            host: 10.0.0.6
            accounts: [{ name: postgres, password_env: C }]
        grants:
          - { users: [alice], assets: [web01], accounts: [deploy] }
          - { users: [alice, bob], assets: [db01] }
        """, path: "/tmp/g.yaml")
        return Directory(config: config)
    }

    func testRoutesOnlyToGrantedAccounts() throws {
        let d = try directory()
        XCTAssertEqual(try d.route(user: "alice", asset: "web01", account: nil).get().account.name, "deploy")
        XCTAssertEqual(d.route(user: "alice", asset: "web01", account: "root"), .failure(.noGrant(asset: "web01", account: "root")))
        XCTAssertEqual(d.route(user: "alice", asset: "nope", account: nil), .failure(.unknownAsset("nope")))
        XCTAssertEqual(d.route(user: "bob", asset: "web01", account: nil), .failure(.noGrant(asset: "web01", account: nil)))
        // An ungranted user learns nothing about which accounts exist.
        XCTAssertEqual(d.route(user: "bob", asset: "web01", account: "ghost"), .failure(.noGrant(asset: "web01", account: nil)))
        XCTAssertEqual(d.targets(for: "alice").map(\.label), ["deploy@web01", "postgres@db01"])
        XCTAssertEqual(d.targets(for: "bob").map(\.label), ["postgres@db01"])
    }

    func testMenuPicksByNumberNameAndUniqueFilter() throws {
        let targets = try directory().targets(for: "alice")
        var menu = AssetMenu(user: "alice", targets: targets, echo: true)
        XCTAssertTrue(menu.screen().contains("deploy"))
        XCTAssertEqual(menu.feed(Array("2\r".utf8)).action, .connect(targets[1]))
        menu = AssetMenu(user: "alice", targets: targets, echo: true)
        XCTAssertEqual(menu.feed(Array("web01\r".utf8)).action, .connect(targets[0]))
        menu = AssetMenu(user: "alice", targets: targets, echo: true)
        XCTAssertEqual(menu.feed(Array("post\r".utf8)).action, .connect(targets[1]))
        menu = AssetMenu(user: "alice", targets: targets, echo: true)
        XCTAssertEqual(menu.feed(Array("q\r".utf8)).action, .quit)
    }

    func testMenuLineEditingAndEscapesTypedText() throws {
        let targets = try directory().targets(for: "alice")
        var menu = AssetMenu(user: "alice", targets: targets, echo: true)
        // "wxb" then two backspaces and "eb01": the line is "web01".
        XCTAssertEqual(menu.feed(Array("wxb\u{7f}\u{7f}eb01\r".utf8)).action, .connect(targets[0]))
        menu = AssetMenu(user: "alice", targets: targets, echo: false)
        let (out, action) = menu.feed(Array("zz\u{1b}[31mq\r".utf8))
        XCTAssertEqual(action, .none)
        let text = String(decoding: out, as: UTF8.self)
        XCTAssertTrue(text.contains("Nothing matches \"zzq\""), text)
        XCTAssertFalse(text.contains("\u{1b}[31m"))
    }

    func testLoginThrottleLocksAfterRepeatedFailuresPerUserAndAddress() {
        let clock = TestClock()
        let throttle = LoginThrottle(maxFailures: 5, window: 300, lockout: 600, now: { clock.now })
        for _ in 0..<4 { XCTAssertFalse(throttle.recordFailure(user: "alice", address: "10.0.0.1")) }
        XCTAssertFalse(throttle.isLocked(user: "alice", address: "10.0.0.1"))
        XCTAssertTrue(throttle.recordFailure(user: "alice", address: "10.0.0.1"))
        XCTAssertTrue(throttle.isLocked(user: "alice", address: "10.0.0.1"))
        XCTAssertFalse(throttle.isLocked(user: "alice", address: "10.0.0.2"))
        XCTAssertFalse(throttle.isLocked(user: "bob", address: "10.0.0.1"))
        clock.now += 601
        XCTAssertFalse(throttle.isLocked(user: "alice", address: "10.0.0.1"))
    }

    func testFailuresOutsideTheWindowDoNotCount() {
        let clock = TestClock()
        let throttle = LoginThrottle(maxFailures: 3, window: 60, lockout: 600, now: { clock.now })
        for _ in 0..<5 {
            throttle.recordFailure(user: "alice", address: "a")
            clock.now += 31
        }
        XCTAssertFalse(throttle.isLocked(user: "alice", address: "a"))
    }

    func testPasswordHashesAreArgon2idAndVerify() {
        let h = PasswordHasher.hash(password: "correct horse")
        XCTAssertTrue(h.hasPrefix("$argon2id$v=19$m=19456,t=2,p=1$"))
        XCTAssertTrue(PasswordHasher.verify(password: "correct horse", hash: h))
        XCTAssertFalse(PasswordHasher.verify(password: "correct horsE", hash: h))
        XCTAssertFalse(PasswordHasher.verify(password: "x", hash: "x"))
        XCTAssertNotEqual(h, PasswordHasher.hash(password: "correct horse"), "salted")
    }
}

final class TestClock: @unchecked Sendable {
    var now = Date(timeIntervalSince1970: 1_000_000)
}
