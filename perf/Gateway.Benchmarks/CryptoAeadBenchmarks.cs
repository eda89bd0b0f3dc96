using BenchmarkDotNet.Attributes;
using Gateway.Crypto;

namespace Gateway.Benchmarks;

/// <summary>
/// ChaCha20-Poly1305 with a session key imported once (the transport-data path): seal in
/// place, and open of a valid packet into a separate buffer. No associated data, as in
/// WireGuard transport messages.
/// </summary>
[MemoryDiagnoser]
public class CryptoAeadBenchmarks
{
    private ChaCha20Poly1305Key _key = null!;
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
        _buffer = new byte[Size + ChaCha20Poly1305Key.TagSize];
        _sealed = new byte[Size + ChaCha20Poly1305Key.TagSize];
        _opened = new byte[Size];
        _key.Seal(7, new byte[Size], default, _sealed);
    }

    [GlobalCleanup]
    public void Cleanup() => _key.Dispose();

    [Benchmark]
    public void SealInPlace() => _key.Seal(_counter++, _buffer.AsSpan(0, Size), default, _buffer);

    [Benchmark]
    public bool Open() => _key.Open(7, _sealed, default, _opened);
}
