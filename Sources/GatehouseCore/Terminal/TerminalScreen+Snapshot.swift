/// Redrawing the screen elsewhere (a watcher joining a live session) and the consistency
/// checks the tests run after every feed.
extension TerminalScreen {
    // MARK: - Snapshot

    /// Bytes that, written to a blank terminal of the same size, reproduce the screen: both screens' text (the main one
    /// first when the alternate one is shown), autowrap joins, saved cursors, scroll region, modes and the cursor.
    /// Attributes and colours are not kept.
    public func snapshot() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(columns * rows + 16 * rows + 64)
        Self.append("\u{1B}[0m\u{1B}[r\u{1B}[?6l\u{1B}[?7h\u{1B}[4l\u{1B}[?25h\u{1B}[H\u{1B}[2J", to: &out)
        if alternateActive, let main = inactive {
            appendRows(of: main, to: &out)
            Self.appendCursorPosition(row: savedMain.row, column: savedMain.column, to: &out)
            Self.append("\u{1B}[?1049h", to: &out)
            appendRows(of: buffer, to: &out)
            Self.appendCursorPosition(row: savedAlternate.row, column: savedAlternate.column, to: &out)
            Self.append("\u{1B}7", to: &out)
        } else {
            appendRows(of: buffer, to: &out)
            Self.appendCursorPosition(row: savedMain.row, column: savedMain.column, to: &out)
            Self.append("\u{1B}7", to: &out)
        }
        if scrollTop != 0 || scrollBottom != rows - 1 {
            Self.append("\u{1B}[\(scrollTop + 1);\(scrollBottom + 1)r", to: &out)
        }
        let rowOffset = originMode ? scrollTop : 0
        if originMode { Self.append("\u{1B}[?6h", to: &out) }
        if pendingWrap, autowrap {
            // Print the last column's character again, which leaves the same pending wrap.
            let base = buffer.rowMap[cursorRow] * columns
            var column = columns - 1
            if column > 0, buffer.cells[base + column] == Self.continuation { column -= 1 }
            Self.appendCursorPosition(row: cursorRow - rowOffset, column: column, to: &out)
            appendCell(buffer.cells[base + column], to: &out)
        } else {
            Self.appendCursorPosition(row: cursorRow - rowOffset, column: cursorColumn, to: &out)
        }
        if !autowrap { Self.append("\u{1B}[?7l", to: &out) }
        if !cursorVisibleFlag { Self.append("\u{1B}[?25l", to: &out) }
        if insertMode { Self.append("\u{1B}[4h", to: &out) }
        return out
    }

    private func appendRows(of screen: Buffer, to out: inout [UInt8]) {
        var previousWrapped = false
        for row in 0..<rows {
            let physical = screen.rowMap[row]
            let base = physical * columns
            let wraps = screen.wrapped[physical] && row < rows - 1
            var end = columns
            if !wraps {
                while end > 0, screen.cells[base + end - 1] == Self.blank { end -= 1 }
            }
            if previousWrapped {
                // The cursor waits at the end of the previous row; the first character wraps and joins the rows.
                end = max(end, 1)
            } else {
                if end == 0 { continue }
                Self.appendCursorPosition(row: row, column: 0, to: &out)
            }
            for column in 0..<end { appendCell(screen.cells[base + column], to: &out) }
            previousWrapped = wraps
        }
    }

    private func appendCell(_ cell: UInt32, to out: inout [UInt8]) {
        if cell == Self.continuation { return }
        if cell & Self.clusterFlag != 0 {
            let index = Int(cell & ~Self.clusterFlag)
            if index < clusters.count {
                for scalar in clusters[index] { Self.appendUTF8(scalar, to: &out) }
            }
            return
        }
        Self.appendUTF8(cell, to: &out)
    }

    private static func appendUTF8(_ scalar: UInt32, to out: inout [UInt8]) {
        switch scalar {
        case 0..<0x80:
            out.append(UInt8(scalar))
        case 0x80..<0x800:
            out.append(UInt8(0xC0 | scalar >> 6))
            out.append(UInt8(0x80 | scalar & 0x3F))
        case 0x800..<0x10000:
            out.append(UInt8(0xE0 | scalar >> 12))
            out.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            out.append(UInt8(0x80 | scalar & 0x3F))
        default:
            out.append(UInt8(0xF0 | scalar >> 18 & 0x07))
            out.append(UInt8(0x80 | scalar >> 12 & 0x3F))
            out.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            out.append(UInt8(0x80 | scalar & 0x3F))
        }
    }

    private static func appendCursorPosition(row: Int, column: Int, to out: inout [UInt8]) {
        append("\u{1B}[\(row + 1);\(column + 1)H", to: &out)
    }

    private static func append(_ string: String, to out: inout [UInt8]) {
        out.append(contentsOf: string.utf8)
    }

    // MARK: - Checks (tests)

    /// The cell invariants hold: every continuation cell follows a character, every cluster index is valid, the row
    /// map is a permutation, and the cursor is on the screen.
    func invariantsHold() -> Bool {
        guard cursorRow >= 0, cursorRow < rows, cursorColumn >= 0, cursorColumn < columns else { return false }
        guard scrollTop >= 0, scrollTop < scrollBottom || rows == 1, scrollBottom < rows else { return false }
        for screen in [buffer] + (inactive.map { [$0] } ?? []) {
            guard screen.cells.count == rows * columns, Set(screen.rowMap).count == rows,
                  screen.rowMap.allSatisfy({ $0 >= 0 && $0 < rows }) else { return false }
            for p in 0..<rows {
                for c in 0..<columns {
                    let cell = screen.cells[p * columns + c]
                    let next = c + 1 < columns ? screen.cells[p * columns + c + 1] : Self.blank
                    if cell == Self.continuation {
                        guard c > 0, isWide(screen.cells[p * columns + c - 1]) else { return false }
                    } else if cell & Self.clusterFlag != 0 {
                        guard Int(cell & ~Self.clusterFlag) < clusters.count else { return false }
                        guard isWide(cell) == (next == Self.continuation) || columns < 2 else { return false }
                    } else if cell > 0x10FFFF || cell < 0x20 || (cell >= 0x7F && cell < 0xA0) {
                        return false
                    } else {
                        guard CharacterWidth.of(cell) != 0 else { return false }
                        guard isWide(cell) == (next == Self.continuation) || columns < 2 else { return false }
                    }
                }
            }
        }
        return true
    }

    private func isWide(_ cell: UInt32) -> Bool {
        if cell == Self.continuation { return false }
        if cell & Self.clusterFlag != 0 {
            let index = Int(cell & ~Self.clusterFlag)
            return index < clusters.count && CharacterWidth.of(clusters[index][0]) == 2
        }
        return CharacterWidth.of(cell) == 2
    }
}
