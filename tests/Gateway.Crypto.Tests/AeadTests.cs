using System.Buffers.Binary;
using System.Text;
using BcAead = Org.BouncyCastle.Crypto.Modes.ChaCha20Poly1305;
using Org.BouncyCastle.Crypto.Parameters;

namespace Gateway.Crypto.Tests;

public class AeadTests
{
    private static readonly byte[] RfcKey = Hex.Bytes(CryptoSelfTest.Rfc8439.Key);
    private static readonly byte[] RfcNonce = Hex.Bytes(CryptoSelfTest.Rfc8439.Nonce);
    private static readonly byte[] RfcAad = Hex.Bytes(CryptoSelfTest.Rfc8439.Aad);
    private static readonly byte[] RfcPlaintext = Encoding.ASCII.GetBytes(CryptoSelfTest.Rfc8439.Plaintext);
    private static readonly byte[] RfcSealed = Hex.Bytes(CryptoSelfTest.Rfc8439.Ciphertext + CryptoSelfTest.Rfc8439.Tag);

    [Fact]
    public void Rfc8439Section282Vector()
    {
        var sealedBytes = new byte[RfcPlaintext.Length + 16];
        ChaCha20Poly1305.SealWithNonce(RfcKey, RfcNonce, RfcPlaintext, RfcAad, sealedBytes);
        Assert.Equal(Hex.Of(RfcSealed), Hex.Of(sealedBytes));

        var opened = new byte[RfcPlaintext.Length];
        Assert.True(ChaCha20Poly1305.OpenWithNonce(RfcKey, RfcNonce, RfcSealed, RfcAad, opened));
        Assert.Equal(RfcPlaintext, opened);
    }

    public static TheoryData<string, int> Tampering() => new()
    {
        { "ciphertext", 0 },
        { "ciphertext", 57 },
        { "tag", 0 },
        { "tag", 15 },
        { "ad", 0 },
        { "ad", 11 },
    };

    [Theory]
    [MemberData(nameof(Tampering))]
    public void Rfc8439TamperingIsRejected(string where, int index)
    {
        byte[] sealedBytes = (byte[])RfcSealed.Clone();
        byte[] ad = (byte[])RfcAad.Clone();
        switch (where)
        {
            case "ciphertext": sealedBytes[index] ^= 0x01; break;
            case "tag": sealedBytes[RfcPlaintext.Length + index] ^= 0x80; break;
            default: ad[index] ^= 0x01; break;
        }
        var opened = new byte[RfcPlaintext.Length];
        Assert.False(ChaCha20Poly1305.OpenWithNonce(RfcKey, RfcNonce, sealedBytes, ad, opened));
        // libsodium wipes the output on failure: no unauthenticated plaintext leaks out.
        Assert.All(opened, b => Assert.Equal(0, b));
    }

    [Theory]
    [MemberData(nameof(Tampering))]
    public void SessionKeyTamperingIsRejected(string where, int index)
    {
        using var key = new ChaCha20Poly1305Key(RfcKey);
        var sealedBytes = new byte[RfcPlaintext.Length + 16];
        byte[] ad = (byte[])RfcAad.Clone();
        key.Seal(7, RfcPlaintext, ad, sealedBytes);
        switch (where)
        {
            case "ciphertext": sealedBytes[index] ^= 0x01; break;
            case "tag": sealedBytes[RfcPlaintext.Length + index] ^= 0x80; break;
            default: ad[index] ^= 0x01; break;
        }
        var opened = new byte[RfcPlaintext.Length];
        Assert.False(key.Open(7, sealedBytes, ad, opened));
    }

    [Fact]
    public void WrongCounterIsRejected()
    {
        using var key = new ChaCha20Poly1305Key(RfcKey);
        var sealedBytes = new byte[RfcPlaintext.Length + 16];
        key.Seal(41, RfcPlaintext, default, sealedBytes);
        Assert.False(key.Open(42, sealedBytes, default, new byte[RfcPlaintext.Length]));
        Assert.True(key.Open(41, sealedBytes, default, new byte[RfcPlaintext.Length]));
    }

    /// <summary>The WireGuard nonce: 4 zero bytes then the counter little-endian (checked against BouncyCastle).</summary>
    [Theory]
    [InlineData(0UL)]
    [InlineData(1UL)]
    [InlineData(0x1_0000_0005UL)]
    [InlineData(ulong.MaxValue - 1)]
    public void CounterNonceLayoutMatchesBouncyCastle(ulong counter)
    {
        byte[] plaintext = Hex.Sequence(200);
        byte[] ad = Hex.Sequence(16);
        byte[] nonce = new byte[12];
        BinaryPrimitives.WriteUInt64LittleEndian(nonce.AsSpan(4), counter);

        var bc = new BcAead();
        bc.Init(true, new AeadParameters(new KeyParameter(RfcKey), 128, nonce, ad));
        var expected = new byte[plaintext.Length + 16];
        int n = bc.ProcessBytes(plaintext, 0, plaintext.Length, expected, 0);
        bc.DoFinal(expected, n);

        using var key = new ChaCha20Poly1305Key(RfcKey);
        var actual = new byte[plaintext.Length + 16];
        key.Seal(counter, plaintext, ad, actual);
        Assert.Equal(Hex.Of(expected), Hex.Of(actual));

        var oneShot = new byte[plaintext.Length + 16];
        ChaCha20Poly1305.Seal(RfcKey, counter, plaintext, ad, oneShot);
        Assert.Equal(Hex.Of(expected), Hex.Of(oneShot));

        var opened = new byte[plaintext.Length];
        Assert.True(ChaCha20Poly1305.Open(RfcKey, counter, expected, ad, opened));
        Assert.Equal(plaintext, opened);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(64)]
    [InlineData(1420)]
    public void SealAndOpenInPlace(int length)
    {
        using var key = new ChaCha20Poly1305Key(RfcKey);
        byte[] plaintext = Hex.Sequence(length);
        var reference = new byte[length + 16];
        key.Seal(5, plaintext, RfcAad, reference);

        var buffer = new byte[length + 16];
        plaintext.CopyTo(buffer, 0);
        key.Seal(5, buffer.AsSpan(0, length), RfcAad, buffer);
        Assert.Equal(Hex.Of(reference), Hex.Of(buffer));

        Assert.True(key.Open(5, buffer, RfcAad, buffer.AsSpan(0, length)));
        Assert.Equal(Hex.Of(plaintext), Hex.Of(buffer.AsSpan(0, length)));
    }

    [Fact]
    public void ShiftedOverlapAndBadLengthsAreRefused()
    {
        using var key = new ChaCha20Poly1305Key(RfcKey);
        var buffer = new byte[100];
        Assert.Throws<ArgumentException>(() => key.Seal(0, buffer.AsSpan(0, 50), default, buffer.AsSpan(1, 66)));
        Assert.Throws<ArgumentException>(() => key.Seal(0, buffer.AsSpan(0, 50), default, buffer.AsSpan(50, 50)));
        Assert.Throws<ArgumentException>(() => key.Open(0, buffer.AsSpan(0, 50), default, buffer.AsSpan(60, 35)));
        Assert.Throws<ArgumentException>(() => new ChaCha20Poly1305Key(new byte[31]));
        Assert.False(key.Open(0, new byte[15], default, Span<byte>.Empty));
        Assert.False(ChaCha20Poly1305.Open(RfcKey, 0, new byte[15], default, Span<byte>.Empty));
    }

    [Fact]
    public void DisposedKeyRefusesUse()
    {
        var key = new ChaCha20Poly1305Key(RfcKey);
        key.Dispose();
        key.Dispose(); // idempotent
        Assert.Throws<ObjectDisposedException>(() => key.Seal(0, default, default, new byte[16]));
        Assert.Throws<ObjectDisposedException>(() => key.Open(0, new byte[16], default, default));
    }

    [Fact]
    public void XChaChaDraftA31VectorAndTampering()
    {
        byte[] nonce = Hex.Bytes(CryptoSelfTest.XChaCha.Nonce);
        byte[] expected = Hex.Bytes(CryptoSelfTest.XChaCha.Ciphertext + CryptoSelfTest.XChaCha.Tag);
        var sealedBytes = new byte[RfcPlaintext.Length + 16];
        XChaCha20Poly1305.Seal(RfcKey, nonce, RfcPlaintext, RfcAad, sealedBytes);
        Assert.Equal(Hex.Of(expected), Hex.Of(sealedBytes));

        var opened = new byte[RfcPlaintext.Length];
        Assert.True(XChaCha20Poly1305.Open(RfcKey, nonce, sealedBytes, RfcAad, opened));
        Assert.Equal(RfcPlaintext, opened);

        sealedBytes[^1] ^= 1;
        Assert.False(XChaCha20Poly1305.Open(RfcKey, nonce, sealedBytes, RfcAad, opened));
        sealedBytes[^1] ^= 1;
        nonce[23] ^= 1;
        Assert.False(XChaCha20Poly1305.Open(RfcKey, nonce, sealedBytes, RfcAad, opened));
        Assert.Throws<ArgumentException>(() => XChaCha20Poly1305.Open(RfcKey, new byte[12], sealedBytes, RfcAad, opened));
    }

    [Fact]
    public void XChaChaInPlace()
    {
        byte[] nonce = Hex.Bytes(CryptoSelfTest.XChaCha.Nonce);
        var buffer = new byte[RfcPlaintext.Length + 16];
        RfcPlaintext.CopyTo(buffer, 0);
        XChaCha20Poly1305.Seal(RfcKey, nonce, buffer.AsSpan(0, RfcPlaintext.Length), RfcAad, buffer);
        Assert.Equal(CryptoSelfTest.XChaCha.Ciphertext + CryptoSelfTest.XChaCha.Tag, Hex.Of(buffer));
        Assert.True(XChaCha20Poly1305.Open(RfcKey, nonce, buffer, RfcAad, buffer.AsSpan(0, RfcPlaintext.Length)));
        Assert.Equal(RfcPlaintext, buffer.AsSpan(0, RfcPlaintext.Length).ToArray());
    }
}
