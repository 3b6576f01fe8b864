import Foundation
import XCTest
@testable import GatehouseCore

/// A legacy scp auditor with its events collected and both directions' output accumulated.
final class ScpHarness {
    var transfers: [AuditedTransfer] = []
    var activities: [String] = []
    var forwarded: [UInt8] = []
    var toUser: [UInt8] = []
    var maxBuffered = 0
    let auditor: ScpAuditor

    init?(_ command: String, policy: ScpAuditor.Policy = .init()) {
        weak var sink: ScpHarness?
        guard let auditor = ScpAuditor(command: command, policy: policy, now: { Date(timeIntervalSince1970: 1_800_000_000) },
                                       events: .init(transfer: { sink?.transfers.append($0) },
                                                     activity: { sink?.activities.append("\($0) \($1)") })) else { return nil }
        self.auditor = auditor
        sink = self
    }

    func client(_ bytes: [UInt8]) throws {
        let verdict = try auditor.clientBytes(bytes)
        forwarded += verdict.forward
        toUser += verdict.replyToClient
        maxBuffered = max(maxBuffered, auditor.bufferedBytes)
    }

    func server(_ bytes: [UInt8]) throws {
        toUser += try auditor.serverBytes(bytes)
        maxBuffered = max(maxBuffered, auditor.bufferedBytes)
    }

    func play(_ script: [Leg], chunk: Int = 0) throws {
        for leg in script {
            let bytes: [UInt8], to: ([UInt8]) throws -> Void
            switch leg {
            case .client(let b): bytes = b; to = client
            case .server(let b): bytes = b; to = server
            }
            if chunk == 0 {
                try to(bytes)
                continue
            }
            var i = 0
            while i < bytes.count {
                try to(Array(bytes[i..<min(bytes.count, i + chunk)]))
                i += chunk
            }
        }
    }
}

final class ScpAuditorTests: XCTestCase {
    let ok: [UInt8] = [0]
    func line(_ s: String) -> [UInt8] { Array((s + "\n").utf8) }
    func warning(_ s: String) -> [UInt8] { [1] + line(s) }
    func fatal(_ s: String) -> [UInt8] { [2] + line(s) }
    func content(_ count: Int, seed: Int = 3) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ seed) } }

    func clientBytes(_ script: [Leg]) -> [UInt8] { script.flatMap { if case .client(let b) = $0 { return b } else { return [] } } }
    func serverBytes(_ script: [Leg]) -> [UInt8] { script.flatMap { if case .server(let b) = $0 { return b } else { return [] } } }

    /// `scp -r -p dir host:/tmp/dst` as OpenSSH sends it: dir/{a, sub/{empty, big}, b}.
    func recursiveUpload() -> [Leg] {
        let a = content(3), big = content(100_000, seed: 11), b = content(2)
        return [
            .server(ok),
            .client(line("T1700000000 0 1700000001 0")), .server(ok),
            .client(line("D0755 0 dir")), .server(ok),
            .client(line("T1700000000 0 1700000001 0")), .server(ok),
            .client(line("C0644 3 a")), .server(ok), .client(a + ok), .server(ok),
            .client(line("D0700 0 sub")), .server(ok),
            .client(line("C0600 0 empty")), .server(ok), .client(ok), .server(ok),
            .client(line("C0644 100000 big")), .server(ok), .client(Array(big[0..<60_000])), .client(Array(big[60_000...]) + ok), .server(ok),
            .client(line("E")), .server(ok),
            .client(line("C0640 2 b")), .server(ok), .client(b + ok), .server(ok),
            .client(line("E")), .server(ok),
        ]
    }

    func testSingleFileUpload() throws {
        let h = try XCTUnwrap(ScpHarness("scp -t -- /tmp/x"))
        let data = Array("hello".utf8)
        let script: [Leg] = [.server(ok), .client(line("C0644 5 a.txt")), .server(ok), .client(data + ok), .server(ok)]
        try h.play(script)
        XCTAssertEqual(h.transfers, [AuditedTransfer(direction: .upload, path: "a.txt", bytes: 5, started: Date(timeIntervalSince1970: 1_800_000_000),
                                                     ended: Date(timeIntervalSince1970: 1_800_000_000), result: "ok", sha256: sha256Hex(data))])
        XCTAssertEqual(h.forwarded, clientBytes(script))
        XCTAssertEqual(h.toUser, serverBytes(script))
        XCTAssertEqual(h.auditor.bufferedBytes, 0)
    }

    func testRecursiveUploadTranscript() throws {
        let h = try XCTUnwrap(ScpHarness("scp -r -p -t -- /tmp/dst"))
        let script = recursiveUpload()
        try h.play(script)
        XCTAssertEqual(h.transfers.map(\.path), ["dir/a", "dir/sub/empty", "dir/sub/big", "dir/b"])
        XCTAssertEqual(h.transfers.map(\.bytes), [3, 0, 100_000, 2])
        XCTAssertEqual(h.transfers.map(\.result), ["ok", "ok", "ok", "ok"])
        XCTAssertEqual(h.transfers.map(\.direction), [.upload, .upload, .upload, .upload])
        XCTAssertEqual(h.transfers.map(\.sha256), [sha256Hex(content(3)), sha256Hex([]), sha256Hex(content(100_000, seed: 11)), sha256Hex(content(2))])
        XCTAssertEqual(h.activities, ["mkdir dir: ok", "mkdir dir/sub: ok"])
        XCTAssertTrue(h.forwarded == clientBytes(script))
        XCTAssertTrue(h.toUser == serverBytes(script))
    }

    func testDownload() throws {
        let h = try XCTUnwrap(ScpHarness("scp -f /etc/hosts"))
        let data = content(70_000)
        let script: [Leg] = [.client(ok), .server(line("C0644 70000 hosts")), .client(ok),
                             .server(Array(data[0..<1000])), .server(Array(data[1000...]) + ok), .client(ok)]
        try h.play(script)
        XCTAssertEqual(h.transfers.count, 1)
        XCTAssertEqual(h.transfers.first?.direction, .download)
        XCTAssertEqual(h.transfers.first?.path, "hosts")
        XCTAssertEqual(h.transfers.first?.bytes, 70_000)
        XCTAssertEqual(h.transfers.first?.sha256, sha256Hex(data))
        XCTAssertEqual(h.transfers.first?.result, "ok")
        XCTAssertTrue(h.forwarded == clientBytes(script))
        XCTAssertTrue(h.toUser == serverBytes(script))
    }

    func testRecursiveDownloadAndMissingSource() throws {
        let h = try XCTUnwrap(ScpHarness("scp -r -f -- /srv/www /srv/missing"))
        try h.play([
            .client(ok),
            .server(line("D0755 0 www")), .client(ok),
            .server(line("C0644 4 index.html")), .client(ok), .server(Array("<h1>".utf8) + ok), .client(ok),
            .server(line("E")), .client(ok),
            .server(warning("scp: /srv/missing: No such file or directory")),
        ])
        XCTAssertEqual(h.transfers.map(\.path), ["www/index.html"])
        XCTAssertEqual(h.transfers.first?.sha256, sha256Hex(Array("<h1>".utf8)))
        XCTAssertEqual(h.activities, ["error scp: /srv/missing: No such file or directory"])
        XCTAssertEqual(h.auditor.command.target, "/srv/www /srv/missing")
    }

    func testWarningsAndFatalAnswers() throws {
        // A warning for one file: the sender skips it and goes on.
        var h = try XCTUnwrap(ScpHarness("scp -t /tmp"))
        try h.play([
            .server(ok),
            .client(line("C0644 5 locked")), .server(warning("scp: /tmp/locked: Permission denied")),
            .client(line("C0644 2 fine")), .server(ok), .client([7, 7, 0]), .server(ok),
        ])
        XCTAssertEqual(h.transfers.map(\.path), ["locked", "fine"])
        XCTAssertEqual(h.transfers.map(\.result), ["scp: /tmp/locked: Permission denied", "ok"])
        XCTAssertEqual(h.transfers.map(\.bytes), [0, 2])
        XCTAssertEqual(h.transfers.first?.sha256, nil)

        // An error writing the file, reported after its data.
        h = try XCTUnwrap(ScpHarness("scp -t /tmp"))
        try h.play([.server(ok), .client(line("C0644 2 full")), .server(ok), .client([1, 2, 0]), .server(warning("scp: /tmp/full: No space left on device"))])
        XCTAssertEqual(h.transfers.map(\.result), ["scp: /tmp/full: No space left on device"])
        XCTAssertEqual(h.transfers.map(\.bytes), [2])

        // The sender could not read its file: its status after the data says so.
        h = try XCTUnwrap(ScpHarness("scp -f /x"))
        try h.play([.client(ok), .server(line("C0644 2 x")), .client(ok), .server([0, 0] + warning("scp: /x: Input/output error")), .client(ok)])
        XCTAssertEqual(h.transfers.map(\.result), ["scp: /x: Input/output error"])

        // Fatal: the transfer ends; what follows is not parsed (and not refused).
        h = try XCTUnwrap(ScpHarness("scp -t /ro"))
        try h.play([.server(ok), .client(line("C0644 5 a")), .server(fatal("scp: /ro/a: Read-only file system")), .client(Array("garbage".utf8))])
        XCTAssertEqual(h.transfers.map(\.result), ["scp: /ro/a: Read-only file system"])

        // A fatal answer to the start.
        h = try XCTUnwrap(ScpHarness("scp -d -t /nope"))
        try h.play([.server(fatal("scp: /nope: No such file or directory"))])
        XCTAssertEqual(h.activities, ["error scp: /nope: No such file or directory"])
        XCTAssertEqual(h.transfers, [])

        // A directory the receiver cannot create is skipped by the sender.
        h = try XCTUnwrap(ScpHarness("scp -r -t /tmp"))
        try h.play([.server(ok), .client(line("D0755 0 d")), .server(warning("scp: /tmp/d: Permission denied")),
                    .client(line("C0644 1 top")), .server(ok), .client([1, 0]), .server(ok)])
        XCTAssertEqual(h.transfers.map(\.path), ["top"])
        XCTAssertEqual(h.activities, ["error d/: scp: /tmp/d: Permission denied"])
    }

    func testDataAndNextHeaderInOneChunk() throws {
        // Not what OpenSSH does (it waits for each answer), but a client may: bytes still count exactly.
        let h = try XCTUnwrap(ScpHarness("scp -t /tmp"))
        try h.play([
            .server(ok),
            .client(line("C0644 3 one")), .server(ok),
            .client([1, 2, 3, 0] + line("C0644 4 two") + [4, 5, 6, 7, 0] + line("C0644 0 three") + [0]),
            .server(ok), .server(ok + ok), .server(ok + ok),
        ])
        XCTAssertEqual(h.transfers.map(\.path), ["one", "two", "three"])
        XCTAssertEqual(h.transfers.map(\.bytes), [3, 4, 0])
        XCTAssertEqual(h.transfers.map(\.sha256), [sha256Hex([1, 2, 3]), sha256Hex([4, 5, 6, 7]), sha256Hex([])])
        XCTAssertEqual(h.auditor.bufferedBytes, 0)

        // Data, status, and the answer's echo: a header right after data in the same chunk on a download.
        let d = try XCTUnwrap(ScpHarness("scp -f /a"))
        try d.play([.client(ok), .server(line("C0644 3 a")), .client(ok), .server([9, 9, 9, 0] + line("C0644 1 b")), .client(ok), .client(ok), .server([5, 0]), .client(ok)])
        XCTAssertEqual(d.transfers.map(\.path), ["a", "b"])
        XCTAssertEqual(d.transfers.map(\.bytes), [3, 1])
    }

    func testOneByteAtATimeGivesTheSameResult() throws {
        let script = recursiveUpload()
        let whole = try XCTUnwrap(ScpHarness("scp -r -p -t /tmp/dst"))
        try whole.play(script)
        for chunk in [1, 2, 5, 4096] {
            let h = try XCTUnwrap(ScpHarness("scp -r -p -t /tmp/dst"))
            try h.play(script, chunk: chunk)
            XCTAssertEqual(h.transfers, whole.transfers, "chunk \(chunk)")
            XCTAssertEqual(h.activities, whole.activities)
            XCTAssertTrue(h.forwarded == whole.forwarded)
            XCTAssertTrue(h.toUser == whole.toUser)
            XCTAssertLessThanOrEqual(h.maxBuffered, 64)
        }
        // A download, one byte at a time, with the whole server side in a single chunk too.
        let data = content(5000)
        let download: [Leg] = [.client(ok), .server(line("D0755 0 d")), .client(ok), .server(line("C0644 5000 f")), .client(ok),
                               .server(data + ok), .client(ok), .server(line("E")), .client(ok)]
        let d = try XCTUnwrap(ScpHarness("scp -r -f d"))
        try d.play(download, chunk: 1)
        XCTAssertEqual(d.transfers.map(\.path), ["d/f"])
        XCTAssertEqual(d.transfers.map(\.sha256), [sha256Hex(data)])
    }

    // MARK: Policy

    func testRefusedUploadIsAnsweredByTheGateway() throws {
        let h = try XCTUnwrap(ScpHarness("scp -p -t /tmp", policy: .init(allowUpload: false)))
        try h.server(ok)
        let times = line("T1 0 1 0")
        var v = try h.auditor.clientBytes(times)
        XCTAssertEqual(v, .init(forward: times, replyToClient: []))
        XCTAssertEqual(try h.auditor.serverBytes(ok), ok)
        v = try h.auditor.clientBytes(line("C0644 5 secret.txt") + Array("hello".utf8))
        XCTAssertEqual(v, .init(forward: [], replyToClient: [2] + line(ScpAuditor.uploadRefusal)))
        XCTAssertEqual(try h.auditor.clientBytes([0] + line("C0644 1 more")), .init())
        XCTAssertEqual(h.transfers.map(\.result), ["refused"])
        XCTAssertEqual(h.transfers.map(\.path), ["secret.txt"])

        // A header split across chunks is held back, not half forwarded.
        let split = try XCTUnwrap(ScpHarness("scp -r -t /tmp", policy: .init(allowUpload: false)))
        try split.server(ok)
        XCTAssertEqual(try split.auditor.clientBytes(Array("D07".utf8)), .init())
        XCTAssertEqual(try split.auditor.clientBytes(Array("55 0 dir\n".utf8)), .init(forward: [], replyToClient: [2] + line(ScpAuditor.uploadRefusal)))
        XCTAssertEqual(split.transfers.map(\.path), ["dir/"])
    }

    func testRefusedDownloadIsRefusedUpFront() throws {
        XCTAssertEqual(ScpAuditor.direction(of: "scp -f /etc/shadow"), .download)
        let h = try XCTUnwrap(ScpHarness("scp -f /etc/shadow", policy: .init(allowDownload: false)))
        XCTAssertEqual(try h.auditor.clientBytes(ok), .init(forward: [], replyToClient: [2] + line(ScpAuditor.downloadRefusal)))
        XCTAssertEqual(try h.auditor.serverBytes(line("C0644 3 shadow") + [1, 2, 3, 0]), [])
        XCTAssertEqual(try h.auditor.clientBytes(ok), .init())
        XCTAssertEqual(h.transfers.map(\.result), ["refused"])
        XCTAssertEqual(h.transfers.map(\.path), ["/etc/shadow"])
    }

    // MARK: Command lines

    func testCommandParsing() {
        XCTAssertEqual(ScpAuditor.direction(of: "scp -t -- /tmp/x"), .upload)
        XCTAssertEqual(ScpAuditor.direction(of: "scp -t /tmp/x"), .upload)
        XCTAssertEqual(ScpAuditor.direction(of: "scp -f /etc/passwd"), .download)
        XCTAssertEqual(ScpAuditor.direction(of: "/usr/bin/scp -v -r -p -d -t -- /x"), .upload)
        XCTAssertEqual(ScpAuditor.parse(command: "scp -prt /x"),
                       .init(direction: .upload, recursive: true, preserveTimes: true, targetIsDirectory: false, target: "/x"))
        XCTAssertEqual(ScpAuditor.parse(command: "scp -f 'my file' \"other one\""),
                       .init(direction: .download, recursive: false, preserveTimes: false, targetIsDirectory: false, target: "my file other one"))
        XCTAssertEqual(ScpAuditor.parse(command: "scp -f ~/logs/*.log")?.target, "~/logs/*.log")
        XCTAssertEqual(ScpAuditor.parse(command: "scp -t a\\ b")?.target, "a b")
        for command in ["ls -l", "scp /a host:/b", "scp -t", "scp -t -f /x", "scp -x -t /a", "scp -t /x; rm -rf /",
                        "scp -t $(id)", "scp -t `id`", "scp -t /x | cat", "scp -t /x && echo", "scp -t /x > /dev/null",
                        "scp -t /x\nreboot", "scp -t '/x", "scp -t \"$HOME\"", "scp -t # comment", "scpx -t /x", "", "-t /x"] {
            XCTAssertNil(ScpAuditor.direction(of: command), command)
            XCTAssertNil(ScpHarness(command), command)
        }
    }

    // MARK: Hostile streams

    func assertMalformed(_ command: String, _ script: [Leg], _ message: String, file: StaticString = #filePath, line: UInt = #line) {
        guard let h = ScpHarness(command) else { return XCTFail("command", file: file, line: line) }
        do {
            try h.play(script)
            XCTFail("expected malformed", file: file, line: line)
        } catch let ScpAuditor.Failure.malformed(text) {
            XCTAssertTrue(text.contains(message), text, file: file, line: line)
            XCTAssertThrowsError(try h.auditor.clientBytes(ok), file: file, line: line)
        } catch {
            XCTFail("\(error)", file: file, line: line)
        }
    }

    func testMalformedHeadersAreRefused() {
        let up = "scp -t /tmp"
        assertMalformed(up, [.server(ok), .client(line("C0644 12x4 a"))], "bad size")
        assertMalformed(up, [.server(ok), .client(line("C0644  a"))], "bad size")
        assertMalformed(up, [.server(ok), .client(line("C0644 1099511627777 a"))], "exceeds the limit")
        assertMalformed(up, [.server(ok), .client(line("C0644 99999999999999999999 a"))], "too large")
        assertMalformed(up, [.server(ok), .client(line("C0644 1 a/b"))], "file name")
        assertMalformed(up, [.server(ok), .client(line("C0644 1 .."))], "file name")
        assertMalformed(up, [.server(ok), .client(line("D0755 0 ."))], "file name")
        assertMalformed(up, [.server(ok), .client(line("C0644 1 "))], "file name")
        assertMalformed(up, [.server(ok), .client(line("C06x4 1 a"))], "bad mode")
        assertMalformed(up, [.server(ok), .client(line("C 1 a"))], "bad mode")
        assertMalformed(up, [.server(ok), .client(line("T1 0 x 0"))], "T record")
        assertMalformed(up, [.server(ok), .client(line("T1 0 1"))], "T record")
        assertMalformed(up, [.server(ok), .client(line("Exyz"))], "E record")
        assertMalformed(up, [.server(ok), .client(Array("X".utf8))], "control record")
        assertMalformed(up, [.server(ok), .client([0])], "control record")
        assertMalformed(up, [.server(ok), .client(Array("C0644 1 ".utf8) + [UInt8](repeating: 97, count: 5000))], "longer than")
        assertMalformed("scp -f /x", [.client(ok), .server(line("C0644 1 ../../etc/passwd"))], "file name")
        // A sender that never waits, far beyond any answer.
        assertMalformed(up, [.client(line("C0644 100000 a") + content(100_000))], "does not wait")
    }

    func testFinishReportsTheFileInProgress() throws {
        let h = try XCTUnwrap(ScpHarness("scp -t /tmp"))
        try h.play([.server(ok), .client(line("C0644 10 a")), .server(ok), .client([1, 2, 3])])
        h.auditor.finish()
        XCTAssertEqual(h.transfers.map(\.result), ["incomplete"])
        XCTAssertEqual(h.transfers.map(\.bytes), [3])
        XCTAssertEqual(h.transfers.map(\.sha256), [nil])
        h.auditor.finish()
        XCTAssertEqual(h.transfers.count, 1)
    }

    func testFuzzedStreamsNeverCrashAndStayBounded() throws {
        var rng = SeededRandom(seed: 0xC0FFEE)
        let started = Date()
        var malformed = 0, processed = 0, rounds = 0
        let upload = recursiveUpload().map { leg -> Leg in
            // Smaller files keep the rounds fast.
            if case .client(let b) = leg, b.count > 1000 { return .client(Array(b.prefix(500))) }
            return leg
        }
        let download: [Leg] = [.client(ok), .server(line("D0755 0 d")), .client(ok), .server(line("C0644 300 f")), .client(ok),
                               .server(content(300) + ok), .client(warning("scp: d/f: denied")), .server(line("E")), .client(ok),
                               .server(line("C0644 2 g")), .client(fatal("scp: stop")), .server([1, 2, 0])]
        for round in 0..<4000 {
            if Date().timeIntervalSince(started) > 1.8 { break }
            rounds += 1
            let isUpload = round % 2 == 0
            let policy = ScpAuditor.Policy(allowUpload: rng.next() % 3 != 0, allowDownload: rng.next() % 3 != 0)
            let h = try XCTUnwrap(ScpHarness(isUpload ? "scp -r -p -t /tmp" : "scp -r -f d", policy: policy))
            var legs = isUpload ? upload : download
            if round % 5 == 4 {
                // Pure noise in random legs.
                legs = (0..<Int.random(in: 1...20, using: &rng)).map { _ in
                    let b = (0..<Int.random(in: 0...80, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                    return rng.next() % 2 == 0 ? .client(b) : .server(b)
                }
            } else {
                legs = legs.map { leg in
                    func mutate(_ b: [UInt8]) -> [UInt8] {
                        var b = b
                        guard !b.isEmpty, rng.next() % 3 == 0 else { return b }
                        for _ in 0..<Int.random(in: 1...3, using: &rng) {
                            guard !b.isEmpty else { break }
                            let i = Int.random(in: 0..<b.count, using: &rng)
                            switch rng.next() % 4 {
                            case 0: b[i] = UInt8.random(in: 0...255, using: &rng)
                            case 1: b.remove(at: i)
                            case 2: b.insert([0, 1, 2, 10, 32, 47, 48, 67, 68, 69, 84][Int.random(in: 0...10, using: &rng)], at: i)
                            default: b = Array(b[0..<i])
                            }
                        }
                        return b
                    }
                    switch leg {
                    case .client(let b): return .client(mutate(b))
                    case .server(let b): return .server(mutate(b))
                    }
                }
            }
            let chunk = [0, 0, 1, 2, 7, 100][Int.random(in: 0...5, using: &rng)]
            do {
                try h.play(legs, chunk: chunk)
                processed += 1
            } catch ScpAuditor.Failure.malformed {
                malformed += 1
            }
            h.auditor.finish()
            XCTAssertLessThanOrEqual(h.maxBuffered, 2 * ScpAuditor.maxLine + ScpAuditor.maxBacklog + 200)
        }
        XCTAssertGreaterThan(malformed, 10)
        XCTAssertGreaterThan(processed, 10)
        print("scp fuzz: \(rounds) rounds, \(processed) processed, \(malformed) malformed")
    }
}
