import XCTest
@testable import GatehouseCore

final class TerminalScreenTests: XCTestCase {
    private func screen(_ columns: Int = 20, _ rows: Int = 5, _ output: String = "") -> TerminalScreen {
        var screen = TerminalScreen(columns: columns, rows: rows)
        screen.feed(Array(output.utf8))
        return screen
    }

    private func at(_ row: Int, _ column: Int) -> TerminalScreen.Position {
        TerminalScreen.Position(row: row, column: column)
    }

    // MARK: - Printing and wrapping

    func testPrintingCarriageReturnAndLineFeed() {
        let s = screen(20, 5, "hello\r\nworld\rW")
        XCTAssertEqual(s.lines, ["hello", "World", "", "", ""])
        XCTAssertEqual(s.cursor, at(1, 1))
        XCTAssertEqual(s.line(-1), "")
        XCTAssertEqual(s.line(5), "")
    }

    func testLineFeedAtTheBottomScrollsAndCountsScrolledRows() {
        let s = screen(10, 3, "a\r\nb\r\nc\r\nd\r\ne")
        XCTAssertEqual(s.lines, ["c", "d", "e"])
        XCTAssertEqual(s.scrollCount, 2)
        XCTAssertEqual(s.cursor, at(2, 1))
    }

    func testDeferredWrapAtTheRightMargin() {
        var s = screen(5, 3, "abcde")
        // The last column was written; the cursor waits there until the next printable character.
        XCTAssertEqual(s.cursor, at(0, 4))
        XCTAssertEqual(s.lines, ["abcde", "", ""])
        s.feed(Array("f".utf8))
        XCTAssertEqual(s.lines, ["abcde", "f", ""])
        XCTAssertEqual(s.cursor, at(1, 1))
        // CR right after the last column does not wrap.
        var t = screen(5, 3, "abcde\r\nx")
        XCTAssertEqual(t.lines, ["abcde", "x", ""])
        t.feed(Array("\u{1B}[1;5HZ\u{1B}[K".utf8)) // EL in the pending state clears the last column, as xterm does
        XCTAssertEqual(t.line(0), "abcd")
    }

    func testWrapAtTheBottomScrolls() {
        let s = screen(4, 2, "1234abcdXY")
        XCTAssertEqual(s.lines, ["abcd", "XY"])
        XCTAssertEqual(s.scrollCount, 1)
        XCTAssertEqual(s.text(from: at(0, 0), to: at(1, 4)), "abcdXY")
    }

    func testAutowrapOffOverwritesTheLastColumn() {
        let s = screen(5, 2, "\u{1B}[?7labcdefgh\u{1B}[?7h")
        XCTAssertEqual(s.lines, ["abcdh", ""])
        XCTAssertEqual(s.cursor, at(0, 4))
    }

    func testTextJoinsWrappedRowsWithoutNewline() {
        let s = screen(10, 4, "$ echo 0123456789abc\r\nnext  ")
        XCTAssertEqual(s.lines, ["$ echo 012", "3456789abc", "next", ""])
        XCTAssertEqual(s.text(from: at(0, 2), to: at(1, 10)), "echo 0123456789abc")
        XCTAssertEqual(s.text(from: at(0, 0), to: at(2, 10)), "$ echo 0123456789abc\nnext")
        XCTAssertEqual(s.text(from: at(0, 0), to: at(99, 0)), "$ echo 0123456789abc\nnext\n")
        XCTAssertEqual(s.text(from: at(1, 3), to: at(1, 3)), "")
        XCTAssertEqual(s.text(from: at(2, 0), to: at(1, 0)), "")
    }

    func testTabStopsEveryEightColumns() {
        let s = screen(20, 2, "a\tb\tc\td\te")
        XCTAssertEqual(s.line(0), "a       b       c  e")
        XCTAssertEqual(s.cursor, at(0, 19))
    }

    func testBackspaceDoesNotWrapBack() {
        let s = screen(10, 2, "ab\r\n\u{08}\u{08}x")
        XCTAssertEqual(s.lines, ["ab", "x"])
    }

    // MARK: - Shell line editing

    func testBashBackspaceEditsAndEraseToEndOfLine() {
        let s = screen(40, 3, "$ ls -l\u{08}\u{08}\u{1B}[K-a")
        XCTAssertEqual(s.line(0), "$ ls -a")
        XCTAssertEqual(s.cursor, at(0, 7))
    }

    func testReadlineInsertCharactersInTheMiddle() {
        // "$ echo wrld", cursor left 3, insert "o" with ICH.
        let s = screen(40, 3, "$ echo wrld\u{1B}[3D\u{1B}[1@o")
        XCTAssertEqual(s.line(0), "$ echo world")
        XCTAssertEqual(s.cursor, at(0, 9))
    }

    func testReadlineInsertMode() {
        let s = screen(40, 3, "$ echo wrld\u{1B}[3D\u{1B}[4ho\u{1B}[4l")
        XCTAssertEqual(s.line(0), "$ echo world")
    }

    func testReadlineDeleteCharacters() {
        let s = screen(40, 3, "$ rm -rf /tmp/x\u{1B}[10D\u{1B}[4P")
        XCTAssertEqual(s.line(0), "$ rm /tmp/x")
        XCTAssertEqual(s.cursor, at(0, 5))
    }

    func testHistoryRecallRedrawsTheLine() {
        let s = screen(40, 3, "$ a-very-long-command --flag\r$ ls\u{1B}[K")
        XCTAssertEqual(s.line(0), "$ ls")
        XCTAssertEqual(s.text(from: at(0, 2), to: s.cursor), "ls")
    }

    func testZshStyleRedrawWithCursorColumnAndEraseLine() {
        let s = screen(40, 3, "% git status\u{1B}[1G\u{1B}[2K% git stash\u{1B}[5D\u{1B}[5C")
        XCTAssertEqual(s.line(0), "% git stash")
        XCTAssertEqual(s.cursor, at(0, 11))
    }

    func testCommandTypedAcrossAWrappedRowReadsAsOneLine() {
        var s = screen(10, 3, "$ ")
        let promptEnd = s.cursor
        s.feed(Array("echo hello world".utf8))
        XCTAssertEqual(s.text(from: promptEnd, to: s.cursor), "echo hello world")
    }

    func testReadlineMarginTrickKeepsTheCommandJoined() {
        // At the exact margin readline prints a space and CR so the cursor moves to the next row.
        var s = screen(10, 3, "$ ")
        let promptEnd = s.cursor
        s.feed(Array("12345678 \r9".utf8))
        XCTAssertEqual(s.lines, ["$ 12345678", "9", ""])
        XCTAssertEqual(s.text(from: promptEnd, to: s.cursor), "123456789")
    }

    func testIndexNextLineAndTabEscapes() {
        // CHT 2 from column 1 reaches column 16; CBT goes back to the stop at 8.
        let s = screen(20, 3, "ab\u{1B}Dc\u{1B}Ed\u{1B}[2Ie\u{1B}[2Zf")
        XCTAssertEqual(s.lines, ["ab", "  c", "d       f       e"])
    }

    func testScrollCountKeepsASavedPositionMeaningful() {
        var s = screen(10, 3, "x\r\ny\r\n$ ")
        let saved = s.cursor
        let savedCount = s.scrollCount
        s.feed(Array("echo 12345678901234".utf8))
        let shift = s.scrollCount - savedCount
        XCTAssertEqual(shift, 2)
        let now = at(saved.row - shift, saved.column)
        XCTAssertEqual(s.text(from: now, to: s.cursor), "echo 12345678901234")
    }

    // MARK: - Unicode

    func testUTF8SplitAcrossFeeds() {
        var s = TerminalScreen(columns: 20, rows: 2)
        let bytes = Array("a€b😀c".utf8)
        for byte in bytes { s.feed([byte]) }
        XCTAssertEqual(s.line(0), "a€b😀c")
        XCTAssertEqual(s.cursor, at(0, 6))
    }

    func testInvalidUTF8BecomesReplacementCharacters() {
        let s = {
            var s = TerminalScreen(columns: 20, rows: 2)
            s.feed([0x61, 0xFF, 0x62, 0xE2, 0x82, 0x63, 0xC0, 0xAF, 0xED, 0xA0, 0x80, 0xE2, 0x82])
            s.feed([0x1B, 0x5B, 0x43, 0x64])
            return s
        }()
        XCTAssertEqual(s.line(0), "a\u{FFFD}b\u{FFFD}c\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD} d")
    }

    func testWideCharactersTakeTwoCells() {
        var s = screen(10, 3, "a中b")
        XCTAssertEqual(s.cursor, at(0, 4))
        XCTAssertEqual(s.line(0), "a中b")
        // Overwriting half of a wide character blanks the other half.
        s.feed(Array("\u{1B}[1;3Hx".utf8))
        XCTAssertEqual(s.line(0), "a xb")
        s.feed(Array("\r\u{1B}[B한국어😀!".utf8))
        XCTAssertEqual(s.line(1), "한국어😀!")
        XCTAssertEqual(s.cursor, at(1, 9))
        XCTAssertTrue(s.invariantsHold())
    }

    func testWideCharacterAtTheLastColumnWrapsWhole() {
        let s = screen(5, 3, "abcd中")
        XCTAssertEqual(s.lines, ["abcd", "中", ""])
        XCTAssertEqual(s.cursor, at(1, 2))
        XCTAssertEqual(s.text(from: at(0, 0), to: s.cursor), "abcd 中")
    }

    func testCombiningMarksJoinThePreviousCell() {
        let s = screen(10, 2, "e\u{301}x a\u{308}\u{323}")
        XCTAssertEqual(s.line(0), "e\u{301}x a\u{308}\u{323}")
        XCTAssertEqual(s.cursor, at(0, 4))
        XCTAssertTrue(s.invariantsHold())
    }

    func testManyDistinctCombinedCharactersStayBounded() {
        var s = TerminalScreen(columns: 10, rows: 2)
        var bytes: [UInt8] = []
        for i in 0..<20000 {
            bytes += Array("\r\(Character(Unicode.Scalar(0x4E00 + i % 5000)!))\u{301}\u{302}".utf8)
        }
        s.feed(bytes)
        XCTAssertLessThanOrEqual(s.clusters.count, TerminalScreen.maxClusters)
        XCTAssertEqual(s.line(0).unicodeScalars.count, 3)
        XCTAssertTrue(s.invariantsHold())
    }

    // MARK: - Scroll region, insert and delete lines

    func testScrollRegionLineFeedAtItsBottom() {
        var s = screen(10, 5, "0\r\n1\r\n2\r\n3\r\n4")
        s.feed(Array("\u{1B}[2;4r".utf8))
        XCTAssertEqual(s.cursor, at(0, 0)) // DECSTBM homes the cursor
        s.feed(Array("\u{1B}[4;1Hx\ny".utf8))
        XCTAssertEqual(s.lines, ["0", "2", "x", " y", "4"])
        XCTAssertEqual(s.scrollCount, 0) // the region does not start at the top
        XCTAssertEqual(s.cursor, at(3, 2))
    }

    func testInsertAndDeleteLinesInsideTheRegion() {
        var s = screen(10, 5, "0\r\n1\r\n2\r\n3\r\n4\u{1B}[2;4r\u{1B}[2;1H\u{1B}[L")
        XCTAssertEqual(s.lines, ["0", "", "1", "2", "4"])
        s.feed(Array("\u{1B}[3;2H\u{1B}[2M".utf8))
        XCTAssertEqual(s.lines, ["0", "", "", "", "4"])
        XCTAssertEqual(s.cursor, at(2, 0))
        // Outside the region IL does nothing.
        s.feed(Array("\u{1B}[5;1H\u{1B}[L".utf8))
        XCTAssertEqual(s.lines, ["0", "", "", "", "4"])
    }

    func testReverseIndexAtTheTopOfTheRegionScrollsDown() {
        var s = screen(10, 4, "a\r\nb\r\nc\r\nd\u{1B}[2;3r\u{1B}[2;1H\u{1B}M")
        XCTAssertEqual(s.lines, ["a", "", "b", "d"])
        s.feed(Array("\u{1B}[r\u{1B}[H\u{1B}Mtop".utf8))
        XCTAssertEqual(s.lines, ["top", "a", "", "b"])
    }

    func testScrollUpAndDownSequences() {
        let s = screen(10, 4, "a\r\nb\r\nc\r\nd\u{1B}[2S")
        XCTAssertEqual(s.lines, ["c", "d", "", ""])
        XCTAssertEqual(s.scrollCount, 2)
        let t = screen(10, 4, "a\r\nb\r\nc\r\nd\u{1B}[T")
        XCTAssertEqual(t.lines, ["", "a", "b", "c"])
    }

    // MARK: - Alternate screen

    func testAlternateScreenHidesAndRestoresTheMainScreen() {
        var s = screen(20, 4, "$ vim notes\r\n")
        XCTAssertFalse(s.isAlternateScreen)
        s.feed(Array("\u{1B}[?1049h\u{1B}[Hfile contents\u{1B}[3;5H".utf8))
        XCTAssertTrue(s.isAlternateScreen)
        XCTAssertEqual(s.lines, ["file contents", "", "", ""])
        XCTAssertEqual(s.scrollCount, 0)
        s.feed(Array("\u{1B}[?1049l".utf8))
        XCTAssertFalse(s.isAlternateScreen)
        XCTAssertEqual(s.lines, ["$ vim notes", "", "", ""])
        XCTAssertEqual(s.cursor, at(1, 0))
        // Entering again starts from a cleared alternate screen.
        s.feed(Array("\u{1B}[?1049h".utf8))
        XCTAssertEqual(s.lines, ["", "", "", ""])
    }

    func testOlderAlternateScreenModes() {
        var s = screen(10, 2, "main")
        s.feed(Array("\u{1B}[?47h\u{1B}[Halt".utf8))
        XCTAssertTrue(s.isAlternateScreen)
        XCTAssertEqual(s.line(0), "alt")
        s.feed(Array("\u{1B}[?47l".utf8))
        XCTAssertEqual(s.line(0), "main")
        s.feed(Array("\u{1B}[?47h".utf8)) // 47 does not clear
        XCTAssertEqual(s.line(0), "alt")
        s.feed(Array("\u{1B}[?1047l\u{1B}[?1047h".utf8)) // 1047 clears when leaving
        XCTAssertEqual(s.line(0), "")
    }

    func testCursorVisibility() {
        var s = screen(10, 2, "\u{1B}[?25l")
        XCTAssertFalse(s.isCursorVisible)
        s.feed(Array("\u{1B}[?25h".utf8))
        XCTAssertTrue(s.isCursorVisible)
    }

    // MARK: - Erasing

    func testEraseDisplayVariants() {
        let text = "aaaa\r\nbbbb\r\ncccc\u{1B}[2;3H"
        XCTAssertEqual(screen(4, 3, text + "\u{1B}[J").lines, ["aaaa", "bb", ""])
        XCTAssertEqual(screen(4, 3, text + "\u{1B}[1J").lines, ["", "   b", "cccc"])
        XCTAssertEqual(screen(4, 3, text + "\u{1B}[2J").lines, ["", "", ""])
        XCTAssertEqual(screen(4, 3, text + "\u{1B}[3J").lines, ["aaaa", "bbbb", "cccc"])
        XCTAssertEqual(screen(4, 3, text + "\u{1B}[2J").cursor, at(1, 2))
    }

    func testEraseLineVariantsAndEraseCharacters() {
        let text = "abcdefgh\u{1B}[1;4H"
        XCTAssertEqual(screen(10, 1, text + "\u{1B}[K").line(0), "abc")
        XCTAssertEqual(screen(10, 1, text + "\u{1B}[1K").line(0), "    efgh")
        XCTAssertEqual(screen(10, 1, text + "\u{1B}[2K").line(0), "")
        XCTAssertEqual(screen(10, 1, text + "\u{1B}[2X").line(0), "abc  fgh")
        XCTAssertEqual(screen(10, 1, text + "\u{1B}[99X").line(0), "abc")
        XCTAssertEqual(screen(10, 1, text + "\u{1B}[2X").cursor, at(0, 3))
    }

    func testEraseSplittingAWideCharacterBlanksBothHalves() {
        let s = screen(10, 1, "ab中cd\u{1B}[1;4H\u{1B}[K")
        XCTAssertEqual(s.line(0), "ab")
        XCTAssertTrue(s.invariantsHold())
    }

    // MARK: - Cursor movement

    func testCursorMovesClampToTheScreen() {
        var s = screen(10, 5, "\u{1B}[99999;99999H")
        XCTAssertEqual(s.cursor, at(4, 9))
        s.feed(Array("\u{1B}[65535A\u{1B}[999999999999999999D".utf8))
        XCTAssertEqual(s.cursor, at(0, 0))
        s.feed(Array("\u{1B}[3d\u{1B}[7G".utf8))
        XCTAssertEqual(s.cursor, at(2, 6))
        s.feed(Array("\u{1B}[2E".utf8))
        XCTAssertEqual(s.cursor, at(4, 0))
        s.feed(Array("\u{1B}[F\u{1B}[4`".utf8))
        XCTAssertEqual(s.cursor, at(3, 3))
        s.feed(Array("\u{1B}[;5H".utf8))
        XCTAssertEqual(s.cursor, at(0, 4))
    }

    func testSaveAndRestoreCursor() {
        var s = screen(10, 5, "\u{1B}[3;4H\u{1B}7\u{1B}[H\u{1B}8")
        XCTAssertEqual(s.cursor, at(2, 3))
        s.feed(Array("\u{1B}[2;2H\u{1B}[s\u{1B}[5;5H\u{1B}[u".utf8))
        XCTAssertEqual(s.cursor, at(1, 1))
    }

    func testRepeatPrecedingCharacter() {
        let s = screen(10, 1, "-\u{1B}[4b|")
        XCTAssertEqual(s.line(0), "-----|")
    }

    // MARK: - Resize

    func testResizeKeepsTopLeftAndClampsTheCursor() {
        var s = screen(10, 4, "0123456789\r\nabc\r\n\r\nxyz")
        s.resize(columns: 5, rows: 2)
        XCTAssertEqual(s.columns, 5)
        XCTAssertEqual(s.rows, 2)
        XCTAssertEqual(s.lines, ["01234", "abc"])
        XCTAssertEqual(s.cursor, at(1, 3))
        s.resize(columns: 8, rows: 3)
        XCTAssertEqual(s.lines, ["01234", "abc", ""])
        s.feed(Array("\u{1B}[3;8Hz".utf8))
        XCTAssertEqual(s.line(2), "       z")
        XCTAssertTrue(s.invariantsHold())
    }

    func testResizeCutsAWideCharacterAtTheNewEdge() {
        var s = screen(10, 2, "abcd中")
        s.resize(columns: 5, rows: 2)
        XCTAssertEqual(s.line(0), "abcd")
        XCTAssertTrue(s.invariantsHold())
    }

    func testZeroOrNegativeSizeBecomes80x24() {
        let s = TerminalScreen(columns: 0, rows: 0)
        XCTAssertEqual(s.columns, 80)
        XCTAssertEqual(s.rows, 24)
        var t = TerminalScreen(columns: -3, rows: 10)
        XCTAssertEqual(t.columns, 80)
        XCTAssertEqual(t.rows, 10)
        t.resize(columns: 0, rows: -1)
        XCTAssertEqual(t.columns, 80)
        XCTAssertEqual(t.rows, 24)
        let huge = TerminalScreen(columns: 1 << 40, rows: 1 << 40)
        XCTAssertEqual(huge.columns, TerminalScreen.maxColumns)
        XCTAssertEqual(huge.rows, TerminalScreen.maxRows)
    }

    func testResizeWhileOnTheAlternateScreen() {
        var s = screen(10, 3, "main\u{1B}[?1049h\u{1B}[2;1Halt")
        s.resize(columns: 6, rows: 2)
        XCTAssertEqual(s.lines, ["", "alt"])
        s.feed(Array("\u{1B}[?1049l".utf8))
        XCTAssertEqual(s.lines, ["main", ""])
        XCTAssertEqual(s.cursor, at(0, 4))
        XCTAssertTrue(s.invariantsHold())
    }

    // MARK: - Strings and hostile input

    func testOSCTitleIsSwallowed() {
        let s = screen(30, 2, "\u{1B}]0;user@host: ~\u{07}$ \u{1B}]2;title\u{1B}\\ok\u{1B}]133;A\u{1B}\\")
        XCTAssertEqual(s.line(0), "$ ok")
        let t = screen(30, 2, "\u{1B}P+q544e\u{1B}\\a\u{1B}_apc\u{1B}\\b\u{1B}^pm\u{1B}\\c\u{1B}Xsos\u{1B}\\d")
        XCTAssertEqual(t.line(0), "abcd")
    }

    func testUnterminatedOSCIsCappedAndTheScreenRecovers() {
        var s = TerminalScreen(columns: 20, rows: 2)
        s.feed(Array("\u{1B}]0;".utf8))
        let chunk = [UInt8](repeating: UInt8(ascii: "x"), count: 4096)
        for _ in 0..<(TerminalScreen.maxStringLength / chunk.count - 1) { s.feed(chunk) }
        s.feed(Array(chunk[2...])) // with "0;", exactly the cap: nothing is stored, nothing shows
        XCTAssertEqual(s.lines, ["", ""])
        XCTAssertEqual(s.stringLength, TerminalScreen.maxStringLength)
        // Past the cap the string is dropped and output shows again.
        s.feed(Array("\r$ ok".utf8))
        XCTAssertEqual(s.line(0), "$ ok")
        // An escape sequence also ends an unterminated string.
        s.feed(Array("\u{1B}]0;never ends\u{1B}[2;1Hnext".utf8))
        XCTAssertEqual(s.line(1), "next")
    }

    func testUnknownAndMalformedSequencesAreIgnored() {
        let s = screen(40, 2, "a\u{1B}[>4;1mb\u{1B}[?2004hc\u{1B}[38;2;1;2;3md\u{1B}[6n\u{1B}[>c\u{1B}[18t\u{1B}[ q"
            + "e\u{1B}(Bf\u{1B}#8g\u{1B}=h\u{1B}>i\u{1B}[1;2;3;4;5;6;7;8;9;10;11;12;13;14;15;16;17;18;19;20;21;22;23;24;25;26;27;28;29;30;31;32;33;34;35mj"
            + "\u{1B}[?1;2?3hk\u{1B}[1\u{18}l\u{1B}[99999999999999999999999999999Cm\u{07}\u{0E}\u{0F}\u{7F}n")
        XCTAssertEqual(s.line(0), "abcdefghijkl" + String(repeating: " ", count: 27) + "m")
        XCTAssertEqual(s.line(1), "n")
        XCTAssertEqual(s.cursor, at(1, 1))
    }

    func testControlCharactersInsideASequenceAct() {
        let s = screen(10, 3, "ab\u{1B}[\r2Cc")
        XCTAssertEqual(s.line(0), "abc")
    }

    func testFullReset() {
        var s = screen(10, 3, "abc\u{1B}[2;3r\u{1B}[?1049h\u{1B}[?25lxyz")
        s.feed(Array("\u{1B}c".utf8))
        XCTAssertEqual(s.lines, ["", "", ""])
        XCTAssertFalse(s.isAlternateScreen)
        XCTAssertTrue(s.isCursorVisible)
        XCTAssertEqual(s.cursor, at(0, 0))
        s.feed(Array("1\r\n2\r\n3\r\n4".utf8))
        XCTAssertEqual(s.lines, ["2", "3", "4"])
    }

    func testRandomBytesInRandomChunksNeverBreakTheScreen() {
        var rng = SplitMix64(seed: 0x6A7E_4053)
        var bytes = [UInt8](repeating: 0, count: 2 << 20)
        for i in bytes.indices {
            // Mostly random bytes, with escape-heavy stretches so sequences actually parse.
            let r = rng.next()
            switch r % 8 {
            case 0: bytes[i] = 0x1B
            case 1: bytes[i] = UInt8(ascii: "[")
            case 2: bytes[i] = UInt8(truncatingIfNeeded: 0x30 + (r >> 8) % 16)
            default: bytes[i] = UInt8(truncatingIfNeeded: r >> 16)
            }
        }
        for size in [(7, 5), (80, 24), (1, 1), (2, 3)] {
            var s = TerminalScreen(columns: size.0, rows: size.1)
            var i = 0
            while i < bytes.count {
                let n = Int(rng.next() % 300) + 1
                let end = min(bytes.count, i + n)
                bytes[i..<end].withUnsafeBytes { s.feed($0) }
                i = end
                XCTAssertTrue(s.cursor.row >= 0 && s.cursor.row < s.rows && s.cursor.column >= 0 && s.cursor.column < s.columns)
                if rng.next() % 2000 == 0 {
                    s.resize(columns: Int(rng.next() % 100), rows: Int(rng.next() % 40))
                }
            }
            XCTAssertTrue(s.invariantsHold())
            _ = s.lines
            _ = s.text(from: at(0, 0), to: at(s.rows, 0))
            var copy = TerminalScreen(columns: s.columns, rows: s.rows)
            copy.feed(s.snapshot())
            XCTAssertEqual(copy.lines, s.lines)
            XCTAssertEqual(copy.cursor, s.cursor)
        }
    }

    // MARK: - Snapshot

    private func assertSnapshotReproduces(_ s: TerminalScreen, file: StaticString = #filePath, line: UInt = #line) {
        var copy = TerminalScreen(columns: s.columns, rows: s.rows)
        copy.feed(s.snapshot())
        XCTAssertEqual(copy.lines, s.lines, file: file, line: line)
        XCTAssertEqual(copy.cursor, s.cursor, file: file, line: line)
        XCTAssertEqual(copy.isAlternateScreen, s.isAlternateScreen, file: file, line: line)
        XCTAssertEqual(copy.isCursorVisible, s.isCursorVisible, file: file, line: line)
        XCTAssertEqual(copy.text(from: at(0, 0), to: at(s.rows, 0)), s.text(from: at(0, 0), to: at(s.rows, 0)),
                       file: file, line: line)
    }

    func testSnapshotReproducesTheScreen() {
        var s = screen(10, 4, "$ echo 0123456789abc\r\n中文 e\u{301}\r\n$ ")
        assertSnapshotReproduces(s)
        // Pending wrap: the next character must wrap in both.
        s.feed(Array("\u{1B}[?25l\u{1B}[4;1H0123456789".utf8))
        assertSnapshotReproduces(s)
        var copy = TerminalScreen(columns: 10, rows: 4)
        copy.feed(s.snapshot())
        XCTAssertEqual(copy.scrollCount, 0)
        s.feed(Array("X".utf8))
        copy.feed(Array("X".utf8))
        XCTAssertEqual(copy.lines, s.lines)
    }

    func testSnapshotOfTheAlternateScreenRestoresTheMainOneOnExit() {
        var s = screen(12, 3, "$ less file\r\n\u{1B}[?1049h\u{1B}[Hpage one\u{1B}[2;3r\u{1B}[3;2H")
        assertSnapshotReproduces(s)
        var copy = TerminalScreen(columns: 12, rows: 3)
        copy.feed(s.snapshot())
        let exit = Array("\u{1B}[r\u{1B}[?1049l".utf8)
        s.feed(exit)
        copy.feed(exit)
        XCTAssertEqual(copy.lines, ["$ less file", "", ""])
        XCTAssertEqual(copy.cursor, s.cursor)
        // And the scroll region came across: LF at row 3 of the region scrolls only rows 2-3.
        var t = screen(12, 3, "a\r\nb\r\nc\u{1B}[2;3r\u{1B}[3;1H")
        var u = TerminalScreen(columns: 12, rows: 3)
        u.feed(t.snapshot())
        t.feed(Array("\nd".utf8))
        u.feed(Array("\nd".utf8))
        XCTAssertEqual(u.lines, ["a", "c", "d"])
        XCTAssertEqual(u.lines, t.lines)
    }

    // MARK: - Volume

    func testFeedingEightMebibytesOfASCIILinesCompletes() {
        var line: [UInt8] = []
        for i in 0..<80 { line.append(UInt8(ascii: "a") + UInt8(i % 26)) }
        line += [0x0D, 0x0A]
        var chunk: [UInt8] = []
        while chunk.count < 64 * 1024 { chunk += line }
        var s = TerminalScreen(columns: 120, rows: 40)
        var fed = 0
        while fed < 8 << 20 {
            s.feed(chunk)
            fed += chunk.count
        }
        XCTAssertEqual(s.cursor, at(39, 0))
        XCTAssertEqual(s.line(38).count, 80)
        XCTAssertGreaterThan(s.scrollCount, 100_000)
    }
}

/// A small deterministic generator, so a failure can be replayed.
private struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
