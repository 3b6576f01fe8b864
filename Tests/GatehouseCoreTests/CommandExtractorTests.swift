import Foundation
import XCTest
@testable import GatehouseCore

/// Drives the extractor as a shell would: prompt out, keys in, echo out.
final class CommandExtractorTests: XCTestCase {
    var started: [(String, CommandRisk)] = []
    var finished: [CommandExtractor.Extracted] = []

    func extractor(rules: [CommandRule] = []) -> CommandExtractor {
        started = []
        finished = []
        return CommandExtractor(columns: 80, rows: 24, policy: CommandPolicy(rules: rules, user: "alice", asset: "web01", account: "root"),
                                hooks: .init(started: { [unowned self] c, v in started.append((c, v.risk)); return Double(started.count) },
                                             finished: { [unowned self] in finished.append($0) }))
    }

    func out(_ e: CommandExtractor, _ text: String) {
        Array(text.utf8).withUnsafeBytes { e.output($0) }
    }

    @discardableResult
    func type(_ e: CommandExtractor, _ keys: String, echo: String? = nil) -> CommandExtractor.InputDecision {
        let decision = e.input(Array(keys.utf8))
        if let echo { out(e, echo) }
        return decision
    }

    func testCommandWithBackspaceIsReadOffTheScreen() {
        let e = extractor()
        out(e, "$ ")
        type(e, "ls -x", echo: "ls -x")
        type(e, "\u{7f}", echo: "\u{8}\u{1b}[K")
        type(e, "l", echo: "l")
        type(e, "\r", echo: "\r\n")
        out(e, "total 0\r\nfile-a\r\n$ ")
        e.finish()
        XCTAssertEqual(finished.map(\.command), ["ls -l"])
        XCTAssertEqual(finished.first?.output, "total 0\nfile-a\n$")
    }

    func testPasswordWithoutEchoIsNotACommand() {
        let e = extractor()
        out(e, "Password: ")
        type(e, "hunter2")
        type(e, "\r", echo: "\r\n")
        e.finish()
        XCTAssertTrue(finished.isEmpty)
    }

    func testTypingOnTheAlternateScreenIsNotACommand() {
        let e = extractor()
        out(e, "\u{1b}[?1049h~\r\n~\r\n")
        type(e, ":wq\r", echo: ":wq")
        out(e, "\u{1b}[?1049l$ ")
        e.finish()
        XCTAssertTrue(finished.isEmpty)
    }

    func testDenyHoldsBackTheEnterEvenWhenTypedInOneChunk() throws {
        let e = extractor(rules: [try CommandRule(number: 1, pattern: #"rm\s+-rf\s+/"#, action: .deny)])
        out(e, "$ ")
        let decision = type(e, "rm -rf /srv\r")
        // The typed text goes through, its Enter does not: the shell's line is cleared instead.
        XCTAssertEqual(decision.forward, Array("rm -rf /srv".utf8) + [0x05, 0x15, 0x0D])
        XCTAssertEqual(decision.blockedNotice, "command blocked by rule #1 rm\\s+-rf\\s+/: rm -rf /srv")
        XCTAssertEqual(finished.map(\.command), ["rm -rf /srv"])
        XCTAssertEqual(finished.map(\.verdict.risk), [.denied])
    }

    func testWarnRuleRunsAndIsHighRisk() throws {
        let e = extractor(rules: [try CommandRule(number: 1, pattern: "^reboot", action: .warn)])
        out(e, "$ ")
        let decision = type(e, "reboot\r", echo: "reboot\r\n")
        XCTAssertEqual(decision.forward, Array("reboot\r".utf8))
        e.finish()
        XCTAssertEqual(finished.map(\.verdict.risk), [.high])
    }

    func testCtrlCAbandonsTheLine() {
        let e = extractor()
        out(e, "$ ")
        type(e, "echo half", echo: "echo half")
        type(e, "\u{3}", echo: "^C\r\n$ ")
        type(e, "echo whole", echo: "echo whole")
        type(e, "\r", echo: "\r\nwhole\r\n$ ")
        e.finish()
        XCTAssertEqual(finished.map(\.command), ["echo whole"])
    }

    func testExecRecordsItsCommandAndOutput() {
        let e = extractor()
        e.exec("uname -a", verdict: .init(risk: .normal, rule: nil))
        out(e, "Linux web01 6.1.0\n")
        e.finish()
        XCTAssertEqual(finished.map(\.command), ["uname -a"])
        XCTAssertEqual(finished.first?.output, "Linux web01 6.1.0")
    }

    func testOutputKeepsOnlyTheFirstLinesWithoutEscapes() {
        let text = (1...50).map { "\u{1b}[1mline \($0)\u{1b}[0m\r\n" }.joined()
        XCTAssertEqual(CommandExtractor.firstLines(of: Array(text.utf8), lines: 3), "line 1\nline 2\nline 3")
    }
}
