using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace Gateway.Crypto;

/// <summary>
/// Incremental BLAKE2s (RFC 7693). A value type holding the chaining state and one block
/// buffer (about 112 bytes), so it lives on the stack and never allocates.
/// </summary>
/// <remarks>
/// Being a mutable struct, it must be used through a local or a ref: a copy hashes on its own.
/// The last block must be compressed with the final flag, so Update always keeps the most
/// recent 1..64 bytes buffered: a block is compressed only once more data is known to follow.
/// </remarks>
[SkipLocalsInit]
public struct Blake2sHasher
{
    private Blake2sState _h;
    private Blake2sBlock _buffer;
    private ulong _counter;
    private int _bufferLength;
    private int _outputLength; // 0 = not initialised or already finished

    public Blake2sHasher(int outputLength, ReadOnlySpan<byte> key = default)
    {
        Blake2s.ValidateOutput(outputLength);
        Blake2s.ValidateKey(key.Length);
        _h = default;
        _buffer = default;
        _counter = 0;
        _bufferLength = 0;
        _outputLength = outputLength;
        Blake2sCore.Init(ref _h, outputLength, key.Length);
        if (!key.IsEmpty)
        {
            // The zero-padded key is the first block (RFC 7693 section 3.3).
            key.CopyTo(_buffer);
            _bufferLength = Blake2s.BlockSize;
        }
    }

    public void Update(ReadOnlySpan<byte> data)
    {
        if (_outputLength == 0)
        {
            throw new InvalidOperationException("Blake2sHasher is not initialised or has already finished.");
        }
        UpdateCore(data);
    }

    private void UpdateCore(ReadOnlySpan<byte> data)
    {
        if (data.IsEmpty)
        {
            return;
        }

        int free = Blake2s.BlockSize - _bufferLength;
        if (data.Length > free)
        {
            // More data follows the buffered bytes, so the buffer is not the last block.
            data.Slice(0, free).CopyTo(((Span<byte>)_buffer).Slice(_bufferLength));
            _counter += Blake2s.BlockSize;
            Blake2sCore.Compress(ref _h, ref MemoryMarshal.GetReference<byte>(_buffer), _counter, isFinal: false);
            _bufferLength = 0;
            data = data.Slice(free);

            ref byte p = ref MemoryMarshal.GetReference(data);
            int offset = 0;
            while (data.Length - offset > Blake2s.BlockSize)
            {
                _counter += Blake2s.BlockSize;
                Blake2sCore.Compress(ref _h, ref Unsafe.Add(ref p, offset), _counter, isFinal: false);
                offset += Blake2s.BlockSize;
            }
            data = data.Slice(offset);
        }

        data.CopyTo(((Span<byte>)_buffer).Slice(_bufferLength));
        _bufferLength += data.Length;
    }

    /// <summary>Writes the digest (output.Length must equal the output length given at construction).</summary>
    public void Finish(Span<byte> output)
    {
        if (_outputLength == 0)
        {
            throw new InvalidOperationException("Blake2sHasher is not initialised or has already finished.");
        }
        if (output.Length != _outputLength)
        {
            throw new ArgumentException($"Output must be {_outputLength} bytes, not {output.Length}.", nameof(output));
        }

        Span<byte> buffer = _buffer;
        buffer.Slice(_bufferLength).Clear();
        _counter += (ulong)_bufferLength;
        Blake2sCore.Compress(ref _h, ref MemoryMarshal.GetReference(buffer), _counter, isFinal: true);
        Blake2sCore.WriteOutput(ref _h, output);

        // Wipe: the state may be keyed and the buffer may hold key or message bytes.
        CryptographicOperations.ZeroMemory(buffer);
        CryptographicOperations.ZeroMemory(MemoryMarshal.AsBytes((Span<uint>)_h));
        _counter = 0;
        _bufferLength = 0;
        _outputLength = 0;
    }
}
