/// Erasing, inserting, deleting and scrolling cells; switching screens, resets and resizes.
extension TerminalScreen {
    // MARK: - Editing

    /// Blanks cells [from, to) of visible `row`, and the other half of any wide character cut at either end.
    mutating func clearCells(row: Int, from: Int, to: Int) {
        guard from < to else { return }
        let base = buffer.rowMap[row] * columns
        if from > 0, buffer.cells[base + from] == Self.continuation { buffer.cells[base + from - 1] = Self.blank }
        if to < columns, buffer.cells[base + to] == Self.continuation { buffer.cells[base + to] = Self.blank }
        fill(base + from, count: to - from)
    }

    mutating func fill(_ start: Int, count: Int) {
        buffer.cells.withUnsafeMutableBufferPointer { cells in
            (cells.baseAddress! + start).update(repeating: Self.blank, count: count)
        }
    }

    mutating func clearRow(_ row: Int) {
        let physical = buffer.rowMap[row]
        fill(physical * columns, count: columns)
        buffer.wrapped[physical] = false
    }

    mutating func eraseAll() {
        fill(0, count: buffer.cells.count)
        for p in 0..<rows { buffer.wrapped[p] = false }
    }

    mutating func eraseDisplay(_ mode: Int) {
        pendingWrap = false
        switch mode {
        case 0:
            clearCells(row: cursorRow, from: cursorColumn, to: columns)
            buffer.wrapped[buffer.rowMap[cursorRow]] = false
            for row in (cursorRow + 1)..<rows { clearRow(row) }
        case 1:
            for row in 0..<cursorRow { clearRow(row) }
            clearCells(row: cursorRow, from: 0, to: cursorColumn + 1)
        case 2:
            eraseAll()
        default: // 3: scrollback only, which is not kept
            break
        }
    }

    mutating func eraseLine(_ mode: Int) {
        pendingWrap = false
        switch mode {
        case 0:
            clearCells(row: cursorRow, from: cursorColumn, to: columns)
            buffer.wrapped[buffer.rowMap[cursorRow]] = false
        case 1:
            clearCells(row: cursorRow, from: 0, to: cursorColumn + 1)
        case 2:
            clearCells(row: cursorRow, from: 0, to: columns)
            buffer.wrapped[buffer.rowMap[cursorRow]] = false
        default:
            break
        }
    }

    /// ICH: `count` blanks at the cursor, the rest of the row moving right (and off the edge).
    mutating func insertBlanks(_ count: Int) {
        pendingWrap = false
        let column = cursorColumn
        let width = columns
        let n = min(count, width - column)
        let base = buffer.rowMap[cursorRow] * width
        buffer.cells.withUnsafeMutableBufferPointer { cells in
            let p = cells.baseAddress! + base
            if column > 0, p[column] == Self.continuation { // splitting a wide character
                p[column - 1] = Self.blank
                p[column] = Self.blank
            }
            if n < width - column, p[width - n] == Self.continuation { p[width - n - 1] = Self.blank }
            var k = width - 1
            while k >= column + n {
                p[k] = p[k - n]
                k -= 1
            }
            (p + column).update(repeating: Self.blank, count: n)
        }
    }

    /// DCH: `count` characters at the cursor removed, the rest of the row moving left, blanks entering at the right.
    mutating func deleteCharacters(_ count: Int) {
        pendingWrap = false
        let column = cursorColumn
        let width = columns
        let n = min(count, width - column)
        let base = buffer.rowMap[cursorRow] * width
        buffer.cells.withUnsafeMutableBufferPointer { cells in
            let p = cells.baseAddress! + base
            if column > 0, p[column] == Self.continuation { p[column - 1] = Self.blank }
            if column + n < width, p[column + n] == Self.continuation { p[column + n] = Self.blank }
            var k = column
            while k < width - n {
                p[k] = p[k + n]
                k += 1
            }
            (p + width - n).update(repeating: Self.blank, count: n)
        }
    }

    /// Rows [top, bottom] move up `count`; blank rows enter at the bottom.
    mutating func scrollUp(top: Int, bottom: Int, count: Int) {
        let height = bottom - top + 1
        let n = min(count, height)
        guard n > 0 else { return }
        if n < height { rotate(top: top, bottom: bottom, left: n) }
        for row in (bottom - n + 1)...bottom { clearRow(row) }
        if !alternateActive, top == 0 { scrollCount += n }
    }

    /// Rows [top, bottom] move down `count`; blank rows enter at the top.
    mutating func scrollDown(top: Int, bottom: Int, count: Int) {
        let height = bottom - top + 1
        let n = min(count, height)
        guard n > 0 else { return }
        if n < height { rotate(top: top, bottom: bottom, left: height - n) }
        for row in top..<(top + n) { clearRow(row) }
    }

    /// Rotates rowMap[top...bottom] left by `n` (0 < n < height).
    mutating func rotate(top: Int, bottom: Int, left n: Int) {
        if n == 1 {
            let first = buffer.rowMap[top]
            var r = top
            while r < bottom {
                buffer.rowMap[r] = buffer.rowMap[r + 1]
                r += 1
            }
            buffer.rowMap[bottom] = first
            return
        }
        buffer.rowMap[top..<(top + n)].reverse()
        buffer.rowMap[(top + n)...bottom].reverse()
        buffer.rowMap[top...bottom].reverse()
    }

    // MARK: - Screens and resets

    mutating func switchToAlternate(clear: Bool) {
        guard !alternateActive else { return }
        var other = inactive ?? Buffer(columns: columns, rows: rows)
        inactive = nil
        swap(&buffer, &other)
        inactive = other
        alternateActive = true
        if clear { eraseAll() }
    }

    mutating func switchToMain() {
        guard alternateActive, var other = inactive else { return }
        inactive = nil
        swap(&buffer, &other)
        inactive = other
        alternateActive = false
    }

    mutating func softReset() {
        insertMode = false
        originMode = false
        autowrap = true
        cursorVisibleFlag = true
        scrollTop = 0
        scrollBottom = rows - 1
        pendingWrap = false
        if alternateActive { savedAlternate = SavedCursor() } else { savedMain = SavedCursor() }
    }

    mutating func fullReset() {
        if alternateActive { switchToMain() }
        inactive = nil
        eraseAll()
        softReset()
        savedMain = SavedCursor()
        savedAlternate = SavedCursor()
        cursorRow = 0
        cursorColumn = 0
        tabStops = Self.defaultTabStops(columns)
        lastGraphic = 0
        clusters = []
        clusterIDs = [:]
        state = .ground
        utf8Remaining = 0
    }

    /// Changes the size, keeping the top-left of both screens, clamping the cursor and resetting the scroll region.
    public mutating func resize(columns newColumns: Int, rows newRows: Int) {
        let (c, r) = Self.clampedSize(columns: newColumns, rows: newRows)
        guard c != columns || r != rows else { return }
        buffer = Self.resized(buffer, columns: columns, rows: rows, newColumns: c, newRows: r)
        if let other = inactive {
            inactive = nil
            inactive = Self.resized(other, columns: columns, rows: rows, newColumns: c, newRows: r)
        }
        if c > columns {
            for k in columns..<c { tabStops.append(k % 8 == 0) }
        } else {
            tabStops.removeLast(columns - c)
        }
        columns = c
        rows = r
        scrollTop = 0
        scrollBottom = r - 1
        cursorRow = min(cursorRow, r - 1)
        cursorColumn = min(cursorColumn, c - 1)
        pendingWrap = false
        savedMain.row = min(savedMain.row, r - 1)
        savedMain.column = min(savedMain.column, c - 1)
        savedMain.pendingWrap = false
        savedAlternate.row = min(savedAlternate.row, r - 1)
        savedAlternate.column = min(savedAlternate.column, c - 1)
        savedAlternate.pendingWrap = false
    }

    static func resized(_ old: Buffer, columns: Int, rows: Int, newColumns: Int, newRows: Int) -> Buffer {
        var new = Buffer(columns: newColumns, rows: newRows)
        let keep = min(columns, newColumns)
        for row in 0..<min(rows, newRows) {
            let physical = old.rowMap[row]
            let source = physical * columns
            let target = row * newColumns
            for c in 0..<keep { new.cells[target + c] = old.cells[source + c] }
            if keep < columns, old.cells[source + keep] == continuation { new.cells[target + keep - 1] = blank }
            new.wrapped[row] = old.wrapped[physical]
        }
        return new
    }
}
