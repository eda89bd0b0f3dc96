using BenchmarkDotNet.Attributes;
using Gateway.Crypto;
using NSec.Cryptography;

namespace Gateway.Benchmarks;

/// <summary>
/// ChaCha20-Poly1305 with a session key imported once (the transport-data path): seal in
/// place, and open of a valid packet into a separate buffer. No associated data, as in
/// WireGuard transport messages. <see cref="SealInPlace"/> is the key type as the tunnel uses it
/// (OpenSSL from 512 bytes when present, libsodium below); the two others call each library
/// alone on the same bytes.
/// </summary>
[MemoryDiagnoser]
public class CryptoAeadBenchmarks
{
    private ChaCha20Poly1305Key _key = null!;
    private Key _sodium = null!;
    private OpenSslChaCha20Poly1305? _openssl;
    private readonly byte[] _nonce = new byte[12];
    private byte[] _buffer = [];
    private byte[] _sealed = [];
    private byte[] _opened = [];
    private ulong _counter;

    [Params(64, 512, 1420)]
    public int Size { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var keyBytes = new byte[ChaCha20Poly1305Key.KeySize];
        new Random(42).NextBytes(keyBytes);
        _key = new ChaCha20Poly1305Key(keyBytes);
        _sodium = Key.Import(AeadAlgorithm.ChaCha20Poly1305, keyBytes, KeyBlobFormat.RawSymmetricKey);
        _openssl = OpenSslChaCha20Poly1305.IsSupported ? new OpenSslChaCha20Poly1305(keyBytes) : null;
        _buffer = new byte[Size + ChaCha20Poly1305Key.TagSize];
        _sealed = new byte[Size + ChaCha20Poly1305Key.TagSize];
        _opened = new byte[Size];
        _key.Seal(7, new byte[Size], default, _sealed);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _key.Dispose();
        _sodium.Dispose();
        _openssl?.Dispose();
    }

    [Benchmark]
    public void SealInPlace() => _key.Seal(_counter++, _buffer.AsSpan(0, Size), default, _buffer);

    [Benchmark]
    public bool Open() => _key.Open(7, _sealed, default, _opened);

    /// <summary>libsodium (through NSec) alone, whatever the size.</summary>
    [Benchmark]
    public void SealInPlaceLibsodium() => ChaCha20Poly1305Key.SealCore(_sodium, _counter++, _buffer.AsSpan(0, Size), default, _buffer);

    /// <summary>OpenSSL's EVP alone, whatever the size (libsodium where libcrypto 3 is missing).</summary>
    [Benchmark]
    public void SealInPlaceOpenSsl()
    {
        if (_openssl is null)
        {
            SealInPlaceLibsodium();
            return;
        }
        ChaCha20Poly1305Key.WriteNonce(_counter++, _nonce);
        _openssl.Seal(_nonce, _buffer.AsSpan(0, Size), default, _buffer);
    }
}
