using System.Runtime.CompilerServices;

namespace Gateway.Datapath;

/// <summary>
/// Longest-prefix-match table for IPv4 and IPv6 prefixes: a path-compressed binary trie per
/// family (the shape wireguard-go uses for allowed IPs). A lookup visits at most one node per
/// distinct prefix length on the path and allocates nothing.
/// </summary>
/// <remarks>
/// Lookups may run concurrently with one writer: nodes are fully built before they are linked in,
/// and an entry's value lives in an immutable object swapped with one reference write, so a
/// reader sees either the old or the new value of an entry, never a torn one. Several writers
/// must serialise among themselves.
/// </remarks>
public sealed class LpmTable<T>
{
    private sealed class Entry(IpPrefix prefix, T value)
    {
        public readonly IpPrefix Prefix = prefix;
        public readonly T Value = value;
    }

    private sealed class Node(UInt128 key, int bits)
    {
        // The left-aligned key (bits past Bits are zero) as 64-bit halves: the lookup compares
        // these, since UInt128's operators are calls on the per-packet path and these are single
        // instructions.
        public readonly ulong KeyHigh = (ulong)(key >> 64);
        public readonly ulong KeyLow = (ulong)key;
        public readonly int Bits = bits;
        public Node? Zero;
        public Node? One;
        public Entry? Entry;

        public UInt128 Key => new(KeyHigh, KeyLow);
    }

    private Node? _v4;
    private Node? _v6;
    private int _count;

    public int Count => Volatile.Read(ref _count);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int BitAt(UInt128 leftAligned, int index) => (int)(leftAligned >> (127 - index)) & 1;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ref Node? Child(Node node, int bit) => ref bit == 0 ? ref node.Zero : ref node.One;

    private static int CommonBits(UInt128 a, UInt128 b, int limit)
    {
        UInt128 diff = a ^ b;
        int common = diff == UInt128.Zero ? 128 : (int)UInt128.LeadingZeroCount(diff);
        return Math.Min(common, limit);
    }

    /// <summary>Inserts the prefix or replaces its value.</summary>
    /// <remarks>Compiled optimized from the first call: tables are filled in bulk (a cluster's
    /// ipcache, every peer's allowed IPs) while the method would still run unoptimized.</remarks>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Set(IpPrefix prefix, T value)
    {
        var entry = new Entry(prefix, value);
        UInt128 key = prefix.Address.LeftAligned;
        int bits = prefix.Length;
        ref Node? slot = ref prefix.Address.IsV6 ? ref _v6 : ref _v4;
        while (true)
        {
            Node? node = slot;
            if (node is null)
            {
                Volatile.Write(ref slot, new Node(key, bits) { Entry = entry });
                Interlocked.Increment(ref _count);
                return;
            }
            int common = CommonBits(key, node.Key, Math.Min(bits, node.Bits));
            if (common == node.Bits && common == bits)
            {
                if (node.Entry is null)
                {
                    Interlocked.Increment(ref _count);
                }
                Volatile.Write(ref node.Entry, entry);
                return;
            }
            if (common == node.Bits)
            {
                // The node's prefix covers ours: descend.
                slot = ref Child(node, BitAt(key, node.Bits));
                continue;
            }
            Node replacement;
            if (common == bits)
            {
                // Ours covers the node's prefix: put ours above it.
                replacement = new Node(key, bits) { Entry = entry };
                Child(replacement, BitAt(node.Key, bits)) = node;
            }
            else
            {
                // They diverge: a valueless glue node at the first differing bit holds both.
                replacement = new Node(key & IpPrefix.Mask(common), common);
                Child(replacement, BitAt(key, common)) = new Node(key, bits) { Entry = entry };
                Child(replacement, BitAt(node.Key, common)) = node;
            }
            Volatile.Write(ref slot, replacement);
            Interlocked.Increment(ref _count);
            return;
        }
    }

    /// <summary>Removes the exact prefix; false when it was not present.</summary>
    public bool Remove(IpPrefix prefix)
    {
        ref Node? root = ref prefix.Address.IsV6 ? ref _v6 : ref _v4;
        bool removed = false;
        Node? replacement = RemoveCore(root, prefix.Address.LeftAligned, prefix.Length, ref removed);
        if (removed)
        {
            if (!ReferenceEquals(replacement, root))
            {
                Volatile.Write(ref root, replacement);
            }
            Interlocked.Decrement(ref _count);
        }
        return removed;
    }

    // Returns what should stand in the slot that held `node` after the removal.
    private static Node? RemoveCore(Node? node, UInt128 key, int bits, ref bool removed)
    {
        if (node is null || node.Bits > bits || CommonBits(key, node.Key, node.Bits) < node.Bits)
        {
            return node;
        }
        if (node.Bits == bits)
        {
            if (node.Entry is null)
            {
                return node;
            }
            removed = true;
            Volatile.Write(ref node.Entry, null);
        }
        else
        {
            ref Node? child = ref Child(node, BitAt(key, node.Bits));
            Node? before = child;
            Node? after = RemoveCore(before, key, bits, ref removed);
            if (!ReferenceEquals(before, after))
            {
                Volatile.Write(ref child, after);
            }
            if (!removed)
            {
                return node;
            }
        }
        // Compact: a valueless node with fewer than two children is unnecessary.
        if (node.Entry is null)
        {
            if (node.Zero is null)
            {
                return node.One;
            }
            if (node.One is null)
            {
                return node.Zero;
            }
        }
        return node;
    }

    public void Clear()
    {
        Volatile.Write(ref _v4, null);
        Volatile.Write(ref _v6, null);
        Volatile.Write(ref _count, 0);
    }

    public bool TryGetExact(IpPrefix prefix, out T value)
    {
        UInt128 key = prefix.Address.LeftAligned;
        int bits = prefix.Length;
        Node? node = Volatile.Read(ref prefix.Address.IsV6 ? ref _v6 : ref _v4);
        while (node is not null && node.Bits <= bits && CommonBits(key, node.Key, node.Bits) == node.Bits)
        {
            if (node.Bits == bits)
            {
                var entry = Volatile.Read(ref node.Entry);
                if (entry is not null)
                {
                    value = entry.Value;
                    return true;
                }
                break;
            }
            node = Volatile.Read(ref Child(node, BitAt(key, node.Bits)));
        }
        value = default!;
        return false;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Entry? Find(IpAddress address)
    {
        ulong high = address.LeftHigh, low = address.LeftLow;
        Node? node = Volatile.Read(ref address.IsV6 ? ref _v6 : ref _v4);
        Entry? best = null;
        while (node is not null)
        {
            int bits = node.Bits;
            // The node's prefix must match: its first `bits` bits of the two halves.
            ulong maskHigh = bits >= 64 ? ulong.MaxValue : bits == 0 ? 0 : ulong.MaxValue << (64 - bits);
            ulong maskLow = bits <= 64 ? 0 : ulong.MaxValue << (128 - bits);
            if ((((high ^ node.KeyHigh) & maskHigh) | ((low ^ node.KeyLow) & maskLow)) != 0)
            {
                break;
            }
            best = Volatile.Read(ref node.Entry) ?? best;
            if (bits == 128)
            {
                break;
            }
            // Bit `bits` of the left-aligned address (as BitAt, on the halves).
            int bit = bits < 64 ? (int)(high >> (63 - bits)) & 1 : (int)(low >> (127 - bits)) & 1;
            node = Volatile.Read(ref Child(node, bit));
        }
        return best;
    }

    /// <summary>The value of the longest prefix containing the address.</summary>
    public bool TryLookup(IpAddress address, out T value)
    {
        var entry = Find(address);
        if (entry is null)
        {
            value = default!;
            return false;
        }
        value = entry.Value;
        return true;
    }

    /// <summary>Looks up a 4- or 16-byte network-order address; other lengths find nothing.</summary>
    public bool TryLookup(ReadOnlySpan<byte> networkOrderAddress, out T value)
    {
        if (!IpAddress.TryFromBytes(networkOrderAddress, out var address))
        {
            value = default!;
            return false;
        }
        return TryLookup(address, out value);
    }

    public bool TryLookup(IpAddress address, out IpPrefix matched, out T value)
    {
        var entry = Find(address);
        if (entry is null)
        {
            matched = default;
            value = default!;
            return false;
        }
        matched = entry.Prefix;
        value = entry.Value;
        return true;
    }

    /// <summary>Removes every entry the predicate selects; returns how many.</summary>
    public int RemoveWhere(Func<IpPrefix, T, bool> predicate)
    {
        ArgumentNullException.ThrowIfNull(predicate);
        var doomed = new List<IpPrefix>();
        foreach (var (prefix, value) in Entries)
        {
            if (predicate(prefix, value))
            {
                doomed.Add(prefix);
            }
        }
        foreach (var prefix in doomed)
        {
            Remove(prefix);
        }
        return doomed.Count;
    }

    /// <summary>All entries: IPv4 before IPv6, each by address and then prefix length.</summary>
    public IEnumerable<KeyValuePair<IpPrefix, T>> Entries
    {
        get
        {
            var list = new List<KeyValuePair<IpPrefix, T>>(Count);
            Collect(Volatile.Read(ref _v4), list);
            Collect(Volatile.Read(ref _v6), list);
            list.Sort(static (a, b) =>
            {
                int c = a.Key.Address.CompareTo(b.Key.Address);
                return c != 0 ? c : a.Key.Length.CompareTo(b.Key.Length);
            });
            return list;
        }
    }

    private static void Collect(Node? node, List<KeyValuePair<IpPrefix, T>> list)
    {
        var stack = new Stack<Node>();
        if (node is not null)
        {
            stack.Push(node);
        }
        while (stack.TryPop(out var current))
        {
            var entry = Volatile.Read(ref current.Entry);
            if (entry is not null)
            {
                list.Add(new(entry.Prefix, entry.Value));
            }
            if (Volatile.Read(ref current.One) is { } one)
            {
                stack.Push(one);
            }
            if (Volatile.Read(ref current.Zero) is { } zero)
            {
                stack.Push(zero);
            }
        }
    }
}
