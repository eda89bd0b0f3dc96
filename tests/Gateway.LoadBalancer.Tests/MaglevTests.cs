using System.Text;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;

namespace Gateway.LoadBalancer.Tests;

public class MaglevTests
{
    [Fact]
    public void Murmur3MatchesPublishedVectors()
    {
        Assert.Equal((0UL, 0UL), Murmur3.Hash128([], 0));
        // MurmurHash3_x64_128 digests (little-endian h1 then h2): "hello" -> cbd8a7b341bd9b02 5b1e906a48ae1d19.
        Assert.Equal((0xcbd8a7b341bd9b02UL, 0x5b1e906a48ae1d19UL), Murmur3.Hash128(Encoding.ASCII.GetBytes("hello"), 0));
        Assert.Equal((0xe34bbc7bbc071b6cUL, 0x7a433ca9c49a9347UL),
            Murmur3.Hash128(Encoding.ASCII.GetBytes("The quick brown fox jumps over the lazy dog"), 0));
    }

    [Fact]
    public void DefaultSeedDecodesLikeCilium()
    {
        var (murmur, j0, j1) = MaglevTable.DecodeSeed(MaglevTable.DefaultHashSeed);
        byte[] d = Convert.FromBase64String("JLfvgnHc2kaSUFaI");
        Assert.Equal((uint)(d[0] << 24 | d[1] << 16 | d[2] << 8 | d[3]), murmur);
        Assert.Equal((uint)(d[4] << 24 | d[5] << 16 | d[6] << 8 | d[7]), j0);
        Assert.Equal((uint)(d[8] << 24 | d[9] << 16 | d[10] << 8 | d[11]), j1);
        Assert.Throws<ArgumentException>(() => MaglevTable.DecodeSeed("c2hvcnQ="));
    }

    /// <summary>The table equals a direct transcription of Cilium's GetLookupTable with the stored N x M permutation.</summary>
    [Theory]
    [InlineData(1, 251)]
    [InlineData(3, 251)]
    [InlineData(37, 1021)]
    [InlineData(100, 16381)]
    public void TableEqualsTheStoredPermutationAlgorithm(int n, int m)
    {
        var names = Enumerable.Range(0, n).Select(i => $"10.0.{i / 250}.{i % 250}:8080").Order(StringComparer.Ordinal).ToArray();
        var (table, sorted) = MaglevTable.Build(names, m);
        Assert.Equal(names, sorted);
        uint seed = MaglevTable.DecodeSeed(MaglevTable.DefaultHashSeed).Murmur;
        var perm = new ulong[n * m];
        for (int i = 0; i < n; i++)
        {
            var (offset, skip) = MaglevTable.OffsetAndSkip(names[i], m, seed);
            perm[i * m] = offset % (ulong)m;
            for (int j = 1; j < m; j++)
            {
                perm[i * m + j] = (perm[i * m + j - 1] + skip) % (ulong)m;
            }
        }
        var next = new int[n];
        var entry = Enumerable.Repeat(-1, m).ToArray();
        for (int k = 0; k < m; k++)
        {
            int i = k % n;
            ulong c = perm[i * m + next[i]];
            while (entry[c] >= 0)
            {
                next[i]++;
                c = perm[i * m + next[i]];
            }
            entry[c] = i;
            next[i]++;
        }
        Assert.Equal(entry, table.Select(x => (int)x).ToArray());
    }

    [Fact]
    public void InputOrderDoesNotMatter()
    {
        var names = new[] { "10.0.0.3:80", "10.0.0.1:80", "10.0.0.2:80" };
        var a = MaglevTable.Build(names, 1021);
        var b = MaglevTable.Build(names.Reverse(), 1021);
        Assert.Equal(a.Table, b.Table);
    }

    /// <summary>Cilium's TestBackendRemoval: with 3 backends and M = 1021, removing one moves &lt; 1% of the others' entries.</summary>
    [Fact]
    public void RemovingABackendBarelyMovesTheOthers()
    {
        var (before, names) = MaglevTable.Build(["one", "three", "two"], 1021);
        var (after, namesAfter) = MaglevTable.Build(["one", "three"], 1021);
        int changed = 0;
        for (int p = 0; p < before.Length; p++)
        {
            string b = names[before[p]];
            string a = namesAfter[after[p]];
            if (b != "two" && a != b)
            {
                changed++;
            }
        }
        Assert.True(changed * 100.0 / before.Length < 1.0, $"{changed} entries of surviving backends moved");
    }

    private static Arbitrary<string[]> BackendSets() =>
        Gen.Choose(2, 60).SelectMany(n => Gen.Choose(0, 1 << 20).Select(seed =>
        {
            var r = new Random(seed);
            return Enumerable.Range(0, n).Select(_ => $"10.{r.Next(256)}.{r.Next(256)}.{r.Next(256)}:{r.Next(1, 65536)}").Distinct().ToArray();
        })).ToArbitrary();

    /// <summary>
    /// Evenness: with M = 16381 and N backends every backend owns floor(M/N) or ceil(M/N) entries
    /// (the round-robin turns give each exactly that), so the spread is within one entry.
    /// </summary>
    [Property(MaxTest = 40)]
    public Property SpreadsEvenly() => Prop.ForAll(BackendSets(), names =>
    {
        var (table, sorted) = MaglevTable.Build(names);
        var counts = new int[sorted.Length];
        foreach (var e in table)
        {
            counts[e]++;
        }
        int low = table.Length / sorted.Length;
        return counts.All(c => c == low || c == low + 1);
    });

    /// <summary>
    /// Minimal disruption: removing one backend reassigns all of its entries and only a small
    /// share of the others'. Bound: the entries of surviving backends that move are at most
    /// 2 x M/N + 1% of M (the Maglev paper reports ~M/N moved on removal).
    /// </summary>
    [Property(MaxTest = 40)]
    public Property RemovalDisruptsLittle() => Prop.ForAll(BackendSets(), Gen.Choose(0, 1000).ToArbitrary(), (names, pick) =>
    {
        var (before, sortedBefore) = MaglevTable.Build(names);
        string removed = sortedBefore[pick % sortedBefore.Length];
        var (after, sortedAfter) = MaglevTable.Build(names.Where(n => n != removed));
        int moved = 0;
        for (int p = 0; p < before.Length; p++)
        {
            string b = sortedBefore[before[p]], a = sortedAfter[after[p]];
            if (a == removed)
            {
                return false.Label($"removed backend {removed} still at {p}");
            }
            if (b != removed && a != b)
            {
                moved++;
            }
        }
        double bound = 2.0 * before.Length / sortedBefore.Length + 0.01 * before.Length;
        return (moved <= bound).Label($"moved {moved} > {bound}");
    });

    [Fact]
    public void FastModuloEqualsTheRemainderForEverySupportedSize()
    {
        var rng = new Random(7);
        foreach (int size in MaglevTable.SupportedSizes)
        {
            var table = Fixtures.Compile(options: new ServiceTableOptions { MaglevTableSize = size });
            foreach (uint v in new uint[] { 0, 1, (uint)size - 1, (uint)size, (uint)size + 1, uint.MaxValue, uint.MaxValue - 1, 0x80000000 })
            {
                Assert.Equal(v % (uint)size, table.MaglevMod(v));
            }
            for (int i = 0; i < 200_000; i++)
            {
                uint v = (uint)rng.NextInt64(0, 1L << 32);
                Assert.Equal(v % (uint)size, table.MaglevMod(v));
            }
        }
    }
}
