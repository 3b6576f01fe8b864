import Dispatch
import Foundation
import GRDB
import XCTest
@testable import GatehouseCore

final class AccessStoreTests: XCTestCase {
    var dir: String!
    var path: String { dir + "/g.sqlite" }
    let day = Date(timeIntervalSince1970: 1_800_000_000)
    let sessionA = "aaaa1111-0000-4000-8000-000000000001"
    let sessionB = "bbbb2222-0000-4000-8000-000000000002"

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "gatehouse-access-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// A store with two session rows (shares and collaborations reference sessions).
    func store() throws -> SQLiteSessionStore {
        let store = try SQLiteSessionStore(path: path)
        for id in [sessionA, sessionB] {
            try store.insert(SessionRecord(id: id, user: "alice", asset: "web01", account: "deploy", protocolName: "ssh",
                                           remoteAddress: "10.0.0.9", clientSoftware: "SSH-2.0-OpenSSH_9.2", program: "shell",
                                           started: day, state: .online))
        }
        return store
    }

    // MARK: Credentials

    func testCredentialIsFoundBySecretAndOnlyItsHashIsStored() throws {
        let store = try store()
        let secret = Secret.generate(prefix: "ghk_")
        let record = CredentialRecord(kind: .token, user: "alice", created: day, expires: nil, label: "ci deploys")
        try store.addCredential(secret: secret, record)

        XCTAssertEqual(try store.credential(secret: secret, now: day.addingTimeInterval(86400 * 365)), record)
        XCTAssertNil(try store.credential(secret: secret + "x", now: day))
        XCTAssertNil(try store.credential(secret: String(secret.dropLast()), now: day))
        XCTAssertNil(try store.credential(secret: Secret.hash(secret), now: day), "the hash is not a credential")

        // The row as a second reader sees it: the hash, never the secret.
        let rows = try DatabaseQueue(path: path).read { db in try Row.fetchAll(db, sql: "SELECT * FROM credential") }
        XCTAssertEqual(rows.count, 1)
        XCTAssertEqual(rows.first?["hash"] as String?, Secret.hash(secret))
        for row in rows {
            for (column, value) in row {
                XCTAssertFalse(value.description.contains(secret), "column \(column) holds the secret")
                XCTAssertFalse(value.description.contains(secret.dropFirst(4)), "column \(column) holds the secret")
            }
        }
    }

    func testHashIsSHA256Hex() {
        XCTAssertEqual(Secret.hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(Secret.hash(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    func testCredentialExpiryAndRemoval() throws {
        let store = try store()
        let expires = day.addingTimeInterval(3600)
        let web = CredentialRecord(kind: .web, user: "bob", created: day, expires: expires, label: nil)
        let token = CredentialRecord(kind: .token, user: "carol", created: day, expires: nil, label: "laptop")
        try store.addCredential(secret: "web-secret", web)
        try store.addCredential(secret: "token-secret", token)

        XCTAssertEqual(try store.credential(secret: "web-secret", now: day), web)
        XCTAssertEqual(try store.credential(secret: "web-secret", now: expires.addingTimeInterval(-1)), web)
        XCTAssertNil(try store.credential(secret: "web-secret", now: expires), "expired at its expiry time")
        XCTAssertNil(try store.credential(secret: "web-secret", now: expires.addingTimeInterval(1)))

        try store.removeCredential(secret: "web-secret")
        XCTAssertNil(try store.credential(secret: "web-secret", now: day))
        XCTAssertEqual(try store.credential(secret: "token-secret", now: day), token, "removing one leaves the others")
        try store.removeCredential(secret: "never-existed")
        XCTAssertEqual(try store.credential(secret: "token-secret", now: day), token)
    }

    // MARK: Shares

    func testSharesRoundTripByCode() throws {
        let store = try store()
        let read = ShareRecord(sessionID: sessionA, mode: .read, createdBy: "alice", created: day,
                               expires: day.addingTimeInterval(900), users: [])
        let write = ShareRecord(sessionID: sessionB, mode: .write, createdBy: "dave", created: day.addingTimeInterval(5),
                                expires: day.addingTimeInterval(60), users: ["bob", "carol"])
        let readCode = Secret.inviteCode(), writeCode = Secret.inviteCode()
        try store.addShare(code: readCode, read)
        try store.addShare(code: writeCode, write)
        XCTAssertEqual(try store.share(code: readCode), read)
        XCTAssertEqual(try store.share(code: writeCode), write)
        XCTAssertEqual(try store.share(code: writeCode)?.users, ["bob", "carol"])
        XCTAssertEqual(try store.share(code: readCode)?.users, [], "empty means anyone")
        XCTAssertNil(try store.share(code: "nosuchcode23"))
        XCTAssertNil(try store.share(code: ""))

        let codes = try DatabaseQueue(path: path).read { db in try String.fetchAll(db, sql: "SELECT hash FROM share") }
        XCTAssertEqual(Set(codes), [Secret.hash(readCode), Secret.hash(writeCode)], "codes are kept as hashes")
    }

    // MARK: Collaborations

    func testCollaborationsAddEndAndListInJoinOrder() throws {
        let store = try store()
        let late = CollaborationRecord(sessionID: sessionA, user: "carol", mode: "write", remoteAddress: "10.0.0.3",
                                       joined: day.addingTimeInterval(120))
        let early = CollaborationRecord(sessionID: sessionA, user: "bob", mode: "read", remoteAddress: "10.0.0.2",
                                        joined: day.addingTimeInterval(10))
        let other = CollaborationRecord(sessionID: sessionB, user: "dave", mode: "read", remoteAddress: "10.0.0.4", joined: day)
        let lateID = try store.addCollaboration(late)
        let earlyID = try store.addCollaboration(early)
        let otherID = try store.addCollaboration(other)
        XCTAssertEqual(Set([lateID, earlyID, otherID]).count, 3)

        try store.endCollaboration(id: earlyID, at: day.addingTimeInterval(60))
        try store.endCollaboration(id: earlyID, at: day.addingTimeInterval(999)) // already ended: kept as it was

        var expectedEarly = early
        expectedEarly.id = earlyID
        expectedEarly.left = day.addingTimeInterval(60)
        var expectedLate = late
        expectedLate.id = lateID
        XCTAssertEqual(try store.collaborations(sessionID: sessionA), [expectedEarly, expectedLate])
        XCTAssertEqual(try store.collaborations(sessionID: sessionB).map(\.user), ["dave"])
        XCTAssertEqual(try store.collaborations(sessionID: "cccc").count, 0)
    }

    // MARK: Secrets

    func testGeneratedSecretsArePrefixedURLSafeAndUnique() {
        let allowed = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        var seen = Set<String>()
        for _ in 0..<200 {
            let s = Secret.generate(prefix: "ghw_")
            XCTAssertTrue(s.hasPrefix("ghw_"))
            XCTAssertEqual(s.count, 4 + 43, "32 bytes of unpadded base64")
            XCTAssertTrue(s.dropFirst(4).allSatisfy(allowed.contains), s)
            seen.insert(s)
        }
        XCTAssertEqual(seen.count, 200)
        XCTAssertEqual(Secret.generate(prefix: "").count, 43)
    }

    func testInviteCodesUseTheWholeUnambiguousAlphabet() {
        let alphabet = Set("abcdefghjkmnpqrstuvwxyz23456789")
        var used = Set<Character>()
        var codes = Set<String>()
        for _ in 0..<500 {
            let code = Secret.inviteCode()
            XCTAssertEqual(code.count, 12)
            XCTAssertTrue(code.allSatisfy(alphabet.contains), code)
            used.formUnion(code)
            codes.insert(code)
        }
        XCTAssertEqual(codes.count, 500)
        XCTAssertTrue(used.isDisjoint(with: "ilo01IO"), "no look-alikes")
        XCTAssertEqual(used, alphabet, "6000 draws use every letter") // missing one: about 31 × (30/31)^6000
    }
}

// MARK: - SessionAccess

private final class FakeSession: ManagedSession, @unchecked Sendable {
    let summary: SessionSummary
    let live: LiveChannel?

    init(owner: String, live: Bool) {
        let id = SessionID()
        summary = SessionSummary(id: id, user: owner, asset: "web01", account: "deploy", remoteAddress: "10.0.0.9",
                                 protocolName: "ssh", started: Date())
        self.live = live ? LiveChannel(sessionID: id.description, owner: owner, asset: "web01", started: Date(), columns: 80, rows: 24,
                                       sessionQueue: DispatchQueue(label: "fake.session"), screen: { [] },
                                       hooks: .init(type: { _, _ in }, announce: { _ in })) : nil
    }

    func terminate(message: String, by actor: String) {}

    var record: SessionRecord {
        SessionRecord(id: summary.id.description, user: summary.user, asset: "web01", account: "deploy", protocolName: "ssh",
                      remoteAddress: "10.0.0.9", clientSoftware: "SSH-2.0-OpenSSH_9.2", program: "shell", started: summary.started,
                      state: .online)
    }
}

final class SharingAccessStoreTests: XCTestCase {
    var dir: String!
    var audit: AuditTrail!
    var registry: SessionRegistry!
    var access: SessionAccess!

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "gatehouse-sharing-" + UUID().uuidString
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFHY17t838pkXbUM9reewCc6VahsBhCuVyrNOEzIO7mJ"
        let config = try ConfigLoader(environment: [:]).parse(yaml: """
        users:
          - { name: alice, authorized_keys: ["\(key) alice"] }
          - { name: bob, authorized_keys: ["\(key) bob"] }
          - { name: carol, role: auditor, authorized_keys: ["\(key) carol"] }
          - { name: dave, role: admin, authorized_keys: ["\(key) dave"] }
        assets:
          - name: web01
            host: 10.0.0.5
            accounts: [{ name: deploy, password_env: A }]
        grants:
          - { users: [alice, bob], assets: [web01] }
        """, path: "/tmp/g.yaml")
        audit = try AuditTrail(dataDirectory: dir, policy: RecordingPolicy(), logger: .init(label: "test"))
        registry = SessionRegistry()
        access = SessionAccess(directory: Directory(config: config), registry: registry, audit: audit)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// An online session of `owner`, registered and in the store.
    private func online(_ owner: String, live: Bool = true) throws -> FakeSession {
        let s = FakeSession(owner: owner, live: live)
        try audit.store.insert(s.record)
        registry.add(s)
        return s
    }

    func testRoles() {
        XCTAssertEqual(access.role(of: "carol"), .auditor)
        XCTAssertNil(access.role(of: "mallory"))
        // Users see only their own sessions; auditors and admins see all.
        XCTAssertTrue(access.maySee("alice", sessionOwner: "alice"))
        XCTAssertFalse(access.maySee("alice", sessionOwner: "bob"))
        XCTAssertTrue(access.maySee("carol", sessionOwner: "bob"))
        XCTAssertTrue(access.maySee("dave", sessionOwner: "bob"))
        XCTAssertFalse(access.maySee("mallory", sessionOwner: "mallory"), "unknown users see nothing")
        // Auditors and admins watch; users do not.
        XCTAssertEqual(["alice", "carol", "dave", "mallory"].map(access.mayWatch), [false, true, true, false])
        // Only admins terminate.
        XCTAssertEqual(["alice", "carol", "dave", "mallory"].map(access.mayTerminate), [false, false, true, false])
        // Owners and admins share.
        XCTAssertTrue(access.mayShare("alice", sessionOwner: "alice"))
        XCTAssertTrue(access.mayShare("dave", sessionOwner: "alice"))
        XCTAssertFalse(access.mayShare("bob", sessionOwner: "alice"))
        XCTAssertFalse(access.mayShare("carol", sessionOwner: "alice"))
    }

    func testShareRefusesUnknownSessionsAndOtherPeoplesSessions() throws {
        let s = try online("alice")
        let id = s.summary.id.description
        XCTAssertThrowsError(try access.share(sessionID: "ffffffff", mode: .read, validFor: 60, users: [], by: "alice")) {
            XCTAssertEqual($0 as? SessionAccess.Refusal, .noSuchSession)
        }
        XCTAssertThrowsError(try access.share(sessionID: id, mode: .read, validFor: 60, users: [], by: "bob")) {
            XCTAssertEqual($0 as? SessionAccess.Refusal, .notAllowed("share this session"))
        }
        XCTAssertThrowsError(try access.share(sessionID: id, mode: .read, validFor: 60, users: [], by: "carol")) {
            XCTAssertEqual($0 as? SessionAccess.Refusal, .notAllowed("share this session"))
        }
        let quiet = try online("alice", live: false)
        XCTAssertThrowsError(try access.share(sessionID: quiet.summary.id.description, mode: .read, validFor: 60, users: [], by: "alice")) {
            XCTAssertEqual($0 as? SessionAccess.Refusal, .noSuchSession, "nothing to join without a live channel")
        }
    }

    func testInviteResolvesForTheInvitedWhileValid() throws {
        let s = try online("alice")
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let (code, share) = try access.share(sessionID: s.summary.id.short, mode: .write, validFor: 600, users: ["bob"], by: "alice", now: now)
        XCTAssertEqual(share.sessionID, s.summary.id.description, "the full id, whatever prefix was given")
        XCTAssertEqual(share.mode, .write)
        XCTAssertEqual(share.expires, now.addingTimeInterval(600))
        XCTAssertEqual(try audit.store.share(code: code), share)

        func resolve(_ code: String, _ user: String, at: Date) -> Result<String, SessionAccess.Refusal> {
            access.resolveInvite(code, user: user, now: at).map { share, session in
                XCTAssertTrue(session === s)
                return share.sessionID
            }
        }
        XCTAssertEqual(resolve(code, "bob", at: now.addingTimeInterval(599)), .success(s.summary.id.description))
        XCTAssertEqual(resolve(code.uppercased(), "bob", at: now), .success(s.summary.id.description), "codes are not case-sensitive")
        XCTAssertEqual(resolve(code, "carol", at: now), .failure(.notInvited))
        XCTAssertEqual(resolve(code, "bob", at: now.addingTimeInterval(600)), .failure(.inviteExpired))
        XCTAssertEqual(resolve(code, "bob", at: now.addingTimeInterval(3600)), .failure(.inviteExpired))
        XCTAssertEqual(resolve("x" + code, "bob", at: now), .failure(.badInvite))
        XCTAssertEqual(resolve("", "bob", at: now), .failure(.badInvite))
        XCTAssertEqual(resolve(String(repeating: "a", count: 65), "bob", at: now), .failure(.badInvite))

        registry.remove(s.summary.id)
        XCTAssertEqual(resolve(code, "bob", at: now), .failure(.sessionEnded))

        audit.waitForWrites(timeout: 5)
        XCTAssertEqual(try audit.store.activities(sessionID: s.summary.id.description).map(\.kind), ["shared"])
    }

    func testOpenInviteLetsAnyoneInAndAdminsShareOthersSessions() throws {
        let s = try online("alice")
        let (code, share) = try access.share(sessionID: s.summary.id.description, mode: .read, validFor: 60, users: [], by: "dave")
        XCTAssertEqual(share.createdBy, "dave")
        for user in ["bob", "carol", "dave"] {
            guard case .success(let (resolved, session)) = access.resolveInvite(code, user: user) else {
                return XCTFail("\(user) refused")
            }
            XCTAssertEqual(resolved.mode, .read)
            XCTAssertTrue(session === s)
        }
    }
}
