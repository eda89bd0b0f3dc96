using System.Buffers.Binary;

namespace Gateway.Crypto.Tests;

/// <summary>
/// The RFC 4106 AES-GCM key against the GCM-ESP test cases of draft-mcgrew-gcm-test-01
/// (fixtures/crypto/gcm-esp-vectors.txt). The ESP layer opens the same cases as whole packets in
/// Gateway.Tunnel.Tests; here the AEAD alone is checked: nonce = salt || IV, AAD = SPI || seq.
/// </summary>
public class AesGcmKeyTests
{
    internal sealed record Vector(byte[] Key, byte[] Salt, byte[] Aad, byte[] Iv, byte[] Plaintext, byte[] Ciphertext, byte[] Tag);

    internal static IReadOnlyList<Vector> LoadVectors()
    {
        string path = Path.Combine(AppContext.BaseDirectory, "fixtures", "crypto", "gcm-esp-vectors.txt");
        var list = new List<Vector>();
        foreach (string line in File.ReadLines(path))
        {
            if (line.Length == 0 || line[0] == '#') continue;
            string[] f = line.Split(' ');
            list.Add(new Vector(Hex.Bytes(f[0]), Hex.Bytes(f[1]), Hex.Bytes(f[2] + f[3]), Hex.Bytes(f[4]), Hex.Bytes(f[5]), Hex.Bytes(f[6]), Hex.Bytes(f[7])));
        }
        return list;
    }

    public static TheoryData<int> Cases()
    {
        var data = new TheoryData<int>();
        for (int i = 0; i < LoadVectors().Count; i++) data.Add(i);
        return data;
    }

    private static AesGcmKey Import(Vector v, int tagSize) => new([.. v.Key, .. v.Salt], tagSize);

    [Fact]
    public void AllFourteenCasesAreLoaded() => Assert.Equal(14, LoadVectors().Count);

    [Theory]
    [MemberData(nameof(Cases))]
    public void SealMatchesTheDraftInPlace(int index)
    {
        var v = LoadVectors()[index];
        using var key = Import(v, AesGcmKey.TagSize);
        byte[] buffer = (byte[])v.Plaintext.Clone();
        var tag = new byte[16];
        key.Seal(v.Iv, buffer, v.Aad, buffer, tag);
        Assert.Equal(Hex.Of(v.Ciphertext), Hex.Of(buffer));
        Assert.Equal(Hex.Of(v.Tag), Hex.Of(tag));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void OpenMatchesTheDraftInPlace(int index)
    {
        var v = LoadVectors()[index];
        using var key = Import(v, AesGcmKey.TagSize);
        byte[] buffer = (byte[])v.Ciphertext.Clone();
        Assert.True(key.Open(v.Iv, buffer, v.Tag, v.Aad, buffer));
        Assert.Equal(Hex.Of(v.Plaintext), Hex.Of(buffer));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void TwelveByteTagIsTheTruncatedTag(int index)
    {
        var v = LoadVectors()[index];
        using var key = Import(v, AesGcmKey.ShortTagSize);
        byte[] buffer = (byte[])v.Plaintext.Clone();
        var tag = new byte[12];
        key.Seal(v.Iv, buffer, v.Aad, buffer, tag);
        Assert.Equal(Hex.Of(v.Tag.AsSpan(0, 12)), Hex.Of(tag));
        Assert.True(key.Open(v.Iv, buffer, tag, v.Aad, buffer));
        Assert.Equal(Hex.Of(v.Plaintext), Hex.Of(buffer));
    }

    [Fact]
    public void AnyFlippedBitFailsAndClearsThePlaintext()
    {
        var v = LoadVectors()[0];
        using var key = Import(v, AesGcmKey.TagSize);
        int total = v.Ciphertext.Length + v.Tag.Length + v.Aad.Length + v.Iv.Length;
        for (int bit = 0; bit < total * 8; bit += 7)
        {
            byte[] ct = (byte[])v.Ciphertext.Clone(), tag = (byte[])v.Tag.Clone(), aad = (byte[])v.Aad.Clone(), iv = (byte[])v.Iv.Clone();
            int b = bit / 8;
            byte[] target = b < ct.Length ? ct : (b -= ct.Length) < tag.Length ? tag : (b -= tag.Length) < aad.Length ? aad : iv;
            if (target == iv) b -= aad.Length;
            target[b] ^= (byte)(1 << (bit % 8));
            var output = new byte[ct.Length];
            Array.Fill(output, (byte)0xAA);
            Assert.False(key.Open(iv, ct, tag, aad, output));
            Assert.All(output, x => Assert.Equal(0, x));
        }
    }

    [Fact]
    public void WrongSaltFails()
    {
        var v = LoadVectors()[1];
        byte[] salt = (byte[])v.Salt.Clone();
        salt[3] ^= 1;
        using var key = new AesGcmKey([.. v.Key, .. salt], 16);
        Assert.False(key.Open(v.Iv, v.Ciphertext, v.Tag, v.Aad, new byte[v.Ciphertext.Length]));
    }

    [Theory]
    [InlineData(16, 12)]
    [InlineData(19, 16)]
    [InlineData(21, 16)]
    [InlineData(20, 8)]
    [InlineData(20, 13)]
    public void BadKeyOrTagSizeIsRefused(int keyAndSaltLength, int tagSize) =>
        Assert.Throws<ArgumentException>(() => new AesGcmKey(new byte[keyAndSaltLength], tagSize));

    [Fact]
    public void ShiftedOverlapAndWrongLengthsAreRefused()
    {
        using var key = new AesGcmKey(new byte[20], 16);
        var buffer = new byte[100];
        var tag = new byte[16];
        Assert.Throws<ArgumentException>(() => key.Seal(new byte[8], buffer.AsSpan(0, 50), default, buffer.AsSpan(1, 50), tag));
        Assert.Throws<ArgumentException>(() => key.Seal(new byte[7], buffer.AsSpan(0, 50), default, buffer.AsSpan(0, 50), tag));
        Assert.Throws<ArgumentException>(() => key.Seal(new byte[8], buffer.AsSpan(0, 50), default, buffer.AsSpan(0, 49), tag));
        Assert.Throws<ArgumentException>(() => key.Seal(new byte[8], buffer.AsSpan(0, 50), default, buffer.AsSpan(0, 50), new byte[12]));
    }

    [Fact]
    public void DisposedKeyIsNotUsable()
    {
        var key = new AesGcmKey(new byte[20], 16);
        key.Dispose();
        key.Dispose();
        Assert.Throws<ObjectDisposedException>(() => key.Seal(new byte[8], new byte[4], default, new byte[4], new byte[16]));
    }

    [Fact]
    public void SealAndOpenInPlaceAllocateNothing()
    {
        using var key = new AesGcmKey(Hex.Sequence(20), 16);
        var buffer = new byte[1420];
        var tag = new byte[16];
        var iv = new byte[8];
        var aad = new byte[12];
        ulong seq = 0;
        void RoundTrip()
        {
            BinaryPrimitives.WriteUInt64BigEndian(iv, ++seq);
            key.Seal(iv, buffer, aad, buffer, tag);
            if (!key.Open(iv, buffer, tag, aad, buffer)) throw new InvalidOperationException("round trip failed");
        }
        for (int i = 0; i < 200; i++) RoundTrip();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++) RoundTrip();
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}

/// <summary>The AES-NI/PCLMULQDQ implementation against .NET's AesGcm (OpenSSL) on random inputs:
/// every key size, both tag sizes, lengths across the 8-block and 4-block paths and partial blocks.</summary>
public class AesGcmHardwareTests
{
    [SkippableFact]
    public void HardwareAndDotNetAgreeOnRandomInputs()
    {
        Skip.IfNot(AesGcmHardware.IsSupported, "the CPU has no AES-NI/PCLMULQDQ");
        var random = new Random(4106);
        for (int round = 0; round < 600; round++)
        {
            int keyLength = (round % 3) switch { 0 => 16, 1 => 24, _ => 32 };
            int tag = round % 2 == 0 ? 16 : 12;
            int length = round < 300 ? round : random.Next(0, 2000);
            var keyAndSalt = new byte[keyLength + 4];
            var iv = new byte[8];
            var aad = new byte[random.Next(0, 40)];
            var plaintext = new byte[length];
            random.NextBytes(keyAndSalt);
            random.NextBytes(iv);
            random.NextBytes(aad);
            random.NextBytes(plaintext);
            using var hardware = new AesGcmKey(keyAndSalt, tag, useHardware: true);
            using var dotnet = new AesGcmKey(keyAndSalt, tag, useHardware: false);
            Assert.True(hardware.UsesHardware);
            Assert.False(dotnet.UsesHardware);
            var a = (byte[])plaintext.Clone();
            var b = (byte[])plaintext.Clone();
            var tagA = new byte[tag];
            var tagB = new byte[tag];
            hardware.Seal(iv, a, aad, a, tagA);
            dotnet.Seal(iv, b, aad, b, tagB);
            Assert.Equal(b, a);
            Assert.Equal(tagB, tagA);
            // Each opens what the other sealed; a flipped bit anywhere fails and clears.
            Assert.True(dotnet.Open(iv, a, tagA, aad, a));
            Assert.Equal(plaintext, a);
            Assert.True(hardware.Open(iv, b, tagB, aad, b));
            Assert.Equal(plaintext, b);
            if (length > 0)
            {
                hardware.Seal(iv, b, aad, b, tagB);
                b[random.Next(length)] ^= (byte)(1 << random.Next(8));
                Assert.False(hardware.Open(iv, b, tagB, aad, b));
                Assert.All(b, x => Assert.Equal(0, x));
            }
        }
    }

    [SkippableFact]
    public void HardwareSealAndForgedOpenAllocateNothing()
    {
        Skip.IfNot(AesGcmHardware.IsSupported, "the CPU has no AES-NI/PCLMULQDQ");
        using var key = new AesGcmKey(new byte[20], 16);
        var buffer = new byte[1420];
        var tag = new byte[16];
        var iv = new byte[8];
        var aad = new byte[12];
        key.Seal(iv, buffer, aad, buffer, tag);
        key.Open(iv, buffer, tag, aad, buffer);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
        {
            key.Seal(iv, buffer, aad, buffer, tag);
            tag[0] ^= 1;
            key.Open(iv, buffer, tag, aad, buffer); // forged: no exception, no allocation
        }
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}
