import XCTest
@testable import GatehouseCore

final class ShareEscapeTests: XCTestCase {
    /// Feeds each piece in turn; returns everything forwarded and every request.
    func run(_ pieces: [String], escape: inout ShareEscape) -> (forward: String, requests: [ShareEscape.Request]) {
        var forward: [UInt8] = []
        var requests: [ShareEscape.Request] = []
        for piece in pieces {
            let (f, r) = escape.feed(Array(piece.utf8))
            forward += f
            requests += r
        }
        return (String(decoding: forward, as: UTF8.self), requests)
    }

    func run(_ pieces: String...) -> (forward: String, requests: [ShareEscape.Request]) {
        var escape = ShareEscape()
        return run(pieces, escape: &escape)
    }

    func testInvitesAtLineStartAreSwallowed() {
        XCTAssertEqual(run("~+").forward, "")
        XCTAssertEqual(run("~+").requests, [.readInvite])
        XCTAssertEqual(run("~*").forward, "")
        XCTAssertEqual(run("~*").requests, [.writeInvite])
        let r = run("~+ls\r")
        XCTAssertEqual(r.forward, "ls\r", "only the escape is swallowed")
        XCTAssertEqual(r.requests, [.readInvite])
    }

    func testTildeWithAnythingElseGoesThroughWhole() {
        for text in ["~/bin\r", "~.", "~a", "~\r", "~ "] {
            let r = run(text)
            XCTAssertEqual(r.forward, text)
            XCTAssertEqual(r.requests, [])
        }
        let r = run("~~")
        XCTAssertEqual(r.forward, "~", "~~ sends one ~")
        XCTAssertEqual(r.requests, [])
        let after = run("~~+")
        XCTAssertEqual(after.forward, "~+", "after ~~ the line has started")
        XCTAssertEqual(after.requests, [])
    }

    func testEscapesMidLineAreOrdinaryText() {
        for text in ["ls ~+\r", "echo a~*b", "x~~"] {
            let r = run(text)
            XCTAssertEqual(r.forward, text)
            XCTAssertEqual(r.requests, [])
        }
        // Mid-line in an earlier chunk: still mid-line.
        let r = run("cd ", "~+")
        XCTAssertEqual(r.forward, "cd ~+")
        XCTAssertEqual(r.requests, [])
    }

    func testEscapesSplitAcrossReads() {
        // Keystrokes arrive one read at a time.
        var r = run("~", "+")
        XCTAssertEqual(r.forward, "")
        XCTAssertEqual(r.requests, [.readInvite])
        r = run("~", "*")
        XCTAssertEqual(r.requests, [.writeInvite])
        r = run("~", "/bin")
        XCTAssertEqual(r.forward, "~/bin")
        XCTAssertEqual(r.requests, [])
        r = run("~", "~")
        XCTAssertEqual(r.forward, "~")

        var escape = ShareEscape()
        XCTAssertEqual(escape.feed(Array("~".utf8)).forward, [], "a lone ~ at line start is held")
        XCTAssertEqual(escape.feed(Array("x".utf8)).forward, Array("~x".utf8))
    }

    func testNewLineStartsAfterEnterNewlineCtrlCAndCtrlU() {
        for end in ["\r", "\n", "\u{03}", "\u{15}"] {
            let r = run("some text" + end + "~*")
            XCTAssertEqual(r.requests, [.writeInvite], "after \(end.unicodeScalars.first!.value)")
            XCTAssertEqual(r.forward, "some text" + end)
        }
        // Ended lines in earlier reads.
        for end in ["\r", "\n"] {
            let r = run("some text" + end, "~+")
            XCTAssertEqual(r.requests, [.readInvite], "after \(end.unicodeScalars.first!.value)")
            XCTAssertEqual(r.forward, "some text" + end)
        }
        // Text after the line end in the same read: mid-line again.
        XCTAssertEqual(run("ls\rx", "~+").requests, [])
        XCTAssertEqual(run("ls\rx~+").requests, [])
        // Several invites, one per line.
        let r = run("~+", "ls\r", "~*", "~+")
        XCTAssertEqual(r.requests, [.readInvite, .writeInvite, .readInvite])
        XCTAssertEqual(r.forward, "ls\r")
    }

    /// A user presses Ctrl-C (or Ctrl-U) to abandon a line, then types `~+`: each keystroke
    /// is its own read. The escape must work as after Enter.
    func testCtrlCOrCtrlUInItsOwnReadStartsANewLine() {
        for end in ["\u{03}", "\u{15}"] {
            let r = run("half a command", end, "~", "+")
            XCTAssertEqual(r.requests, [.readInvite], "after \(end.unicodeScalars.first!.value) in its own read")
            XCTAssertEqual(r.forward, "half a command" + end)
            let same = run("half a command" + end, "~+")
            XCTAssertEqual(same.requests, [.readInvite], "after \(end.unicodeScalars.first!.value) ending a read")
        }
    }

    func testBinaryWithoutTildeIsForwardedUnchanged() {
        var escape = ShareEscape()
        let bytes = (0...255).map(UInt8.init).filter { $0 != 0x7E }
        let (f, r) = escape.feed(bytes)
        XCTAssertEqual(f, bytes)
        XCTAssertEqual(r, [])
        XCTAssertEqual(escape.feed([]).forward, [])
    }
}
