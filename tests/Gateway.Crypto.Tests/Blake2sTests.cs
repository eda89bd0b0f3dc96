using Org.BouncyCastle.Crypto.Digests;

namespace Gateway.Crypto.Tests;

public class Blake2sTests
{
    [Fact]
    public void AbcOneShotAndIncremental()
    {
        var md = new byte[32];
        Blake2s.Hash("abc"u8, md);
        Assert.Equal(CryptoSelfTest.Blake2sAbc, Hex.Of(md));

        var hasher = new Blake2sHasher(32);
        hasher.Update("a"u8);
        hasher.Update("bc"u8);
        var md2 = new byte[32];
        hasher.Finish(md2);
        Assert.Equal(CryptoSelfTest.Blake2sAbc, Hex.Of(md2));
    }

    [Fact]
    public void EmptyUnkeyedMatchesBouncyCastle()
    {
        var md = new byte[32];
        Blake2s.Hash(ReadOnlySpan<byte>.Empty, md);
        Assert.Equal(Hex.Of(Reference(null, [], 32)), Hex.Of(md));
    }

    public static TheoryData<int, string> KnownAnswers()
    {
        var data = new TheoryData<int, string>();
        string path = Path.Combine(AppContext.BaseDirectory, "fixtures", "crypto", "blake2s-kat.txt");
        foreach (string line in File.ReadLines(path))
        {
            if (line.Length == 0 || line[0] == '#')
            {
                continue;
            }
            string[] parts = line.Split(' ');
            data.Add(int.Parse(parts[0], System.Globalization.CultureInfo.InvariantCulture), parts[1]);
        }
        return data;
    }

    [Fact]
    public void KnownAnswerTableIsComplete()
    {
        var rows = KnownAnswers();
        Assert.Equal(256, rows.Count());
    }

    /// <summary>BLAKE2 reference keyed KAT: in = 00..(n-1), key = 00..1f.</summary>
    [Theory]
    [MemberData(nameof(KnownAnswers))]
    public void KeyedKnownAnswer(int length, string expected)
    {
        byte[] key = Hex.Sequence(32);
        byte[] input = Hex.Sequence(length);
        var md = new byte[32];
        Blake2s.Hash(key, input, md);
        Assert.Equal(expected, Hex.Of(md));

        // Same through the incremental API, one byte at a time (crosses every block edge).
        var hasher = new Blake2sHasher(32, key);
        foreach (byte b in input)
        {
            hasher.Update([b]);
        }
        var md2 = new byte[32];
        hasher.Finish(md2);
        Assert.Equal(expected, Hex.Of(md2));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(33)]
    public void OutputLengthOutOfRangeThrows(int outLen)
    {
        Assert.Throws<ArgumentException>(() => Blake2s.Hash("x"u8, new byte[outLen]));
        Assert.Throws<ArgumentException>(() => new Blake2sHasher(outLen));
    }

    [Fact]
    public void KeyTooLongThrows()
    {
        Assert.Throws<ArgumentException>(() => Blake2s.Hash(new byte[33], "x"u8, new byte[32]));
        Assert.Throws<ArgumentException>(() => new Blake2sHasher(32, new byte[33]));
    }

    [Fact]
    public void HasherRejectsWrongOutputLengthAndReuse()
    {
        var hasher = new Blake2sHasher(16);
        hasher.Update("abc"u8);
        Assert.Throws<ArgumentException>(() => hasher.Finish(new byte[32]));
        hasher.Finish(new byte[16]);
        Assert.Throws<InvalidOperationException>(() => hasher.Finish(new byte[16]));
        Assert.Throws<InvalidOperationException>(() => default(Blake2sHasher).Update("x"u8));
    }

    [Fact]
    public void Mac16MatchesBouncyCastle()
    {
        // WireGuard's mac1 shape: keyed BLAKE2s with 16-byte output over a 116-byte message.
        byte[] key = Hex.Sequence(32);
        byte[] msg = Hex.Sequence(116);
        var md = new byte[16];
        Blake2s.Hash(key, msg, md);
        Assert.Equal(Hex.Of(Reference(key, msg, 16)), Hex.Of(md));
    }

    internal static byte[] Reference(byte[]? key, byte[] data, int outLen)
    {
        var d = new Blake2sDigest(key is { Length: > 0 } ? key : null, outLen, null, null);
        d.BlockUpdate(data, 0, data.Length);
        var output = new byte[outLen];
        d.DoFinal(output, 0);
        return output;
    }
}
