using System.Text;

namespace Gateway.LoadBalancer;

/// <summary>
/// Maglev consistent hashing (Eisenbud et al., NSDI 2016) exactly as Cilium's pkg/maglev builds
/// its lookup tables, so every node given the same backends builds the same table:
/// <list type="number">
/// <item>Backend names are sorted (byte order) and numbered 0..N-1 in that order.</item>
/// <item>For backend i, (h1, h2) = MurmurHash3_x64_128(name, seed) with the seed taken from the
/// first 4 bytes (big-endian) of the base64 hash seed (Cilium's default "JLfvgnHc2kaSUFaI");
/// offset = h1 mod M, skip = (h2 mod (M - 1)) + 1; its permutation is
/// perm[i][j] = (offset + j * skip) mod M.</item>
/// <item>Turns go round-robin over the backends (all weights 1): on its turn, backend i takes the
/// first position of its permutation not yet taken; repeat until all M positions are filled.</item>
/// </list>
/// M is prime (default 16381), so every skip generates all M positions. A flow picks
/// table[hash(flow) mod M]. The permutation is walked incrementally instead of being stored as
/// Cilium's N x M matrix (same values, O(M) memory). A backend's name is its "address:port"
/// ("[v6]:port" for IPv6), the form Cilium's backend keys print in.
/// </summary>
public static class MaglevTable
{
    /// <summary>Cilium's default table size (a prime; `--bpf-lb-maglev-table-size`).</summary>
    public const int DefaultSize = 16381;

    /// <summary>Cilium's default `--bpf-lb-maglev-hash-seed` (12 bytes, base64).</summary>
    public const string DefaultHashSeed = "JLfvgnHc2kaSUFaI";

    /// <summary>The table sizes Cilium accepts (primes; M should be well above 100 x backends).</summary>
    public static readonly int[] SupportedSizes = [251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071];

    /// <summary>The three seeds of a base64 Maglev hash seed: murmur (permutations) and jhash (flow hash v4/v6).</summary>
    public static (uint Murmur, uint Jhash0, uint Jhash1) DecodeSeed(string base64)
    {
        ArgumentNullException.ThrowIfNull(base64);
        byte[] d;
        try
        {
            d = Convert.FromBase64String(base64);
        }
        catch (FormatException)
        {
            throw new ArgumentException($"Maglev hash seed '{base64}' is not base64", nameof(base64));
        }
        if (d.Length != 12)
        {
            throw new ArgumentException($"Maglev hash seed decodes to {d.Length} bytes, not 12", nameof(base64));
        }
        static uint Be(byte[] b, int o) => (uint)(b[o] << 24 | b[o + 1] << 16 | b[o + 2] << 8 | b[o + 3]);
        return (Be(d, 0), Be(d, 4), Be(d, 8));
    }

    /// <summary>Permutation start and step of one backend name.</summary>
    public static (uint Offset, uint Skip) OffsetAndSkip(string name, int m, uint murmurSeed)
    {
        ArgumentNullException.ThrowIfNull(name);
        Span<byte> buf = name.Length <= 128 ? stackalloc byte[Encoding.UTF8.GetMaxByteCount(name.Length)] : new byte[Encoding.UTF8.GetMaxByteCount(name.Length)];
        int n = Encoding.UTF8.GetBytes(name, buf);
        var (h1, h2) = Murmur3.Hash128(buf[..n], murmurSeed);
        return ((uint)(h1 % (ulong)m), (uint)(h2 % (ulong)(m - 1) + 1));
    }

    /// <summary>
    /// Fills <paramref name="table"/> (length M) with indices into <paramref name="sortedNames"/>.
    /// The names must already be sorted ordinally and be distinct; at most M and at most 65535.
    /// </summary>
    public static void Fill(IReadOnlyList<string> sortedNames, Span<ushort> table, uint murmurSeed)
    {
        ArgumentNullException.ThrowIfNull(sortedNames);
        int m = table.Length;
        int n = sortedNames.Count;
        if (n == 0)
        {
            throw new ArgumentException("A Maglev table needs at least one backend.", nameof(sortedNames));
        }
        if (n > m || n > ushort.MaxValue)
        {
            throw new ArgumentException($"{n} backends do not fit a Maglev table of {m} entries.", nameof(sortedNames));
        }
        var pos = new uint[n];
        var skip = new uint[n];
        for (int i = 0; i < n; i++)
        {
            (pos[i], skip[i]) = OffsetAndSkip(sortedNames[i], m, murmurSeed);
        }
        const ushort Empty = ushort.MaxValue;
        table.Fill(Empty);
        uint um = (uint)m;
        int filled = 0;
        while (true)
        {
            for (int i = 0; i < n; i++)
            {
                uint c = pos[i];
                while (table[(int)c] != Empty)
                {
                    c += skip[i];
                    if (c >= um)
                    {
                        c -= um;
                    }
                }
                table[(int)c] = (ushort)i;
                c += skip[i];
                pos[i] = c >= um ? c - um : c;
                if (++filled == m)
                {
                    return;
                }
            }
        }
    }

    /// <summary>Builds a table for the given names (sorted here) and returns it with the sorted names.</summary>
    public static (ushort[] Table, string[] SortedNames) Build(IEnumerable<string> names, int m = DefaultSize, string hashSeed = DefaultHashSeed)
    {
        var sorted = names.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray();
        var table = new ushort[m];
        Fill(sorted, table, DecodeSeed(hashSeed).Murmur);
        return (table, sorted);
    }
}
