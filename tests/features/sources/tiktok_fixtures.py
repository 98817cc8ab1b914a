"""TikTok scraper outputs, written out as the tools write them (key names, nesting, string counts, escapes, unknown
keys), for the shape tests in ``test_tiktok.py``.

* ``ITEMSTRUCT_ARRAY``: ``json.dump([video.as_dict ...], fh, indent=4)`` of TikTokApi ``itemStruct`` objects — Python's
  ASCII escapes (``\\ud83c\\udf05``), ``createTime`` as a number in one item and as a string in another (newer web
  responses), ``statsV2`` string counts that disagree with a stale ``stats``, ``challenges`` and ``textExtra``.
* ``COLLECTOR``: tiktok-scraper's ``{"headers": ..., "collector": [...]}`` (Node's ``JSON.stringify``: compact, raw
  UTF-8).
* ``APIFY_ARRAY``: an Apify TikTok scraper export (flat records, ``createTimeISO``, string counts).
* ``SIGI_STATE``: the ``SIGI_STATE`` script of a post page (``ItemModule`` keyed by id, ``author`` a handle,
  ``UserModule`` with the profile).
* ``REHYDRATION``: the ``__UNIVERSAL_DATA_FOR_REHYDRATION__`` script of a post page.
* ``PAGE_POST``: one pretty-printed post object, as page extractors save them.
* ``YTDLP_*``: yt-dlp ``--write-info-json`` files of TikTok videos (one line, raw UTF-8), and a playlist's info file.
* ``SCRAPER_CSV``: tiktok-scraper's ``-t csv`` export (json2csv: dotted column names, JSON cells, ``""`` quotes).
* ``CUSTOM_CSV``: a spreadsheet export (BOM, CRLF, own column names) that needs ``--columns``.

All posts were "scraped" at ``SCRAPE = 1_700_000_000``.
"""

SCRAPE = 1_700_000_000

ITEMSTRUCT_ARRAY = r"""[
    {
        "id": "7261234567890123456",
        "desc": "Sunset vibes \ud83c\udf05 #fyp #travel",
        "createTime": 1690656555,
        "scheduleTime": 0,
        "video": {
            "id": "7261234567890123456",
            "height": 1024,
            "width": 576,
            "duration": 15,
            "ratio": "540p",
            "cover": "https://p16-sign-va.tiktokcdn.com/obj/tos-maliva-p-0068/abc?x-expires=1700060400",
            "originCover": "https://p16-sign-va.tiktokcdn.com/obj/tos-maliva-p-0068/def?x-expires=1700060400",
            "dynamicCover": "https://p16-sign-va.tiktokcdn.com/obj/tos-maliva-p-0068/ghi?x-expires=1700060400",
            "playAddr": "https://v16-webapp-prime.tiktok.com/video/tos/useast2a/tos-useast2a-pve-0068/jkl/",
            "downloadAddr": "https://v16-webapp-prime.tiktok.com/video/tos/useast2a/tos-useast2a-pve-0068/mno/",
            "shareCover": [
                ""
            ],
            "reflowCover": "",
            "bitrate": 1256543,
            "encodedType": "normal",
            "format": "mp4",
            "videoQuality": "normal",
            "encodeUserTag": "",
            "codecType": "h264",
            "definition": "540p",
            "subtitleInfos": [],
            "volumeInfo": {
                "Loudness": -17.4,
                "Peak": 0.89125
            }
        },
        "author": {
            "id": "6812345678901234567",
            "uniqueId": "wander.lust",
            "nickname": "Wander \u00e9t\u00e9",
            "avatarThumb": "https://p16-sign-va.tiktokcdn.com/tos-maliva-avt-0068/xyz~c5_100x100.jpeg",
            "signature": "travel \u2022 food",
            "verified": true,
            "secUid": "MS4wLjABAAAAb1c2d3e4f5g6h7i8j9k0",
            "secret": false,
            "ftc": false,
            "relation": 0,
            "openFavorite": false,
            "commentSetting": 0,
            "duetSetting": 0,
            "stitchSetting": 0,
            "privateAccount": false,
            "downloadSetting": 0
        },
        "music": {
            "id": "6952235736812750850",
            "title": "C\u1ee9 Chill Th\u00f4i",
            "playUrl": "https://sf16-ies-music-va.tiktokcdn.com/obj/tos-useast2a-ve-2774/dec7f7cc",
            "coverThumb": "https://p77-va.tiktokcdn.com/img/tos-useast2a-v-2774/f5e7~c5_100x100.jpeg",
            "coverMedium": "https://p77-va.tiktokcdn.com/img/tos-useast2a-v-2774/f5e7~c5_200x200.jpeg",
            "coverLarge": "https://p77-va.tiktokcdn.com/img/tos-useast2a-v-2774/f5e7~c5_720x720.jpeg",
            "authorName": "Chillies & Suni H\u1ea1 Linh",
            "original": false,
            "duration": 60,
            "album": "C\u1ee9 Chill Th\u00f4i",
            "scheduleSearchTime": 0
        },
        "challenges": [
            {
                "id": "229207",
                "title": "fyp",
                "desc": "",
                "profileThumb": "",
                "profileMedium": "",
                "profileLarger": "",
                "coverThumb": "",
                "coverMedium": "",
                "coverLarger": "",
                "isCommerce": false
            },
            {
                "id": "7074",
                "title": "travel",
                "desc": "Share your travels!",
                "profileThumb": "",
                "profileMedium": "",
                "profileLarger": "",
                "coverThumb": "",
                "coverMedium": "",
                "coverLarger": "",
                "isCommerce": false
            }
        ],
        "stats": {
            "diggCount": 1200,
            "shareCount": 12,
            "commentCount": 34,
            "playCount": 10400,
            "collectCount": 200
        },
        "statsV2": {
            "diggCount": "1200",
            "shareCount": "12",
            "commentCount": "34",
            "playCount": "10500",
            "collectCount": "213",
            "repostCount": "0"
        },
        "duetInfo": {
            "duetFromId": "0"
        },
        "originalItem": false,
        "officalItem": false,
        "textExtra": [
            {
                "awemeId": "",
                "start": 18,
                "end": 22,
                "hashtagId": "229207",
                "hashtagName": "fyp",
                "type": 1,
                "subType": 0,
                "isCommerce": false
            },
            {
                "awemeId": "",
                "start": 23,
                "end": 30,
                "hashtagId": "7074",
                "hashtagName": "travel",
                "type": 1,
                "subType": 0,
                "isCommerce": false
            }
        ],
        "secret": false,
        "forFriend": false,
        "digged": false,
        "itemCommentStatus": 0,
        "showNotPass": false,
        "vl1": false,
        "itemMute": false,
        "authorStats": {
            "followingCount": 120,
            "followerCount": 50300,
            "heartCount": 1300000,
            "videoCount": 210,
            "diggCount": 4000,
            "heart": 1300000
        },
        "privateItem": false,
        "duetEnabled": true,
        "stitchEnabled": true,
        "shareEnabled": true,
        "isAd": false,
        "collected": false,
        "locationCreated": "US",
        "diversificationId": 10010
    },
    {
        "id": "7262000000000000001",
        "desc": "no sound here",
        "createTime": "1690700000",
        "video": {
            "id": "7262000000000000001",
            "height": 1280,
            "width": 720,
            "duration": 8,
            "ratio": "720p",
            "format": "mp4"
        },
        "author": {
            "id": "6800000000000000002",
            "uniqueId": "quiet.one",
            "nickname": "Quiet",
            "verified": false,
            "secUid": "MS4wLjABAAAAq"
        },
        "stats": {
            "diggCount": 3,
            "shareCount": 0,
            "commentCount": 1,
            "playCount": 99
        },
        "statsV2": {
            "diggCount": "3",
            "shareCount": "0",
            "commentCount": "1",
            "playCount": "99",
            "collectCount": "0",
            "repostCount": "0"
        },
        "authorStats": {
            "followingCount": 5,
            "followerCount": 17,
            "heartCount": 40,
            "videoCount": 3,
            "diggCount": 0,
            "heart": 40
        },
        "isAd": false
    }
]
"""

COLLECTOR = ('{"headers":{"user-agent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36",'
             '"referer":"https://www.tiktok.com/","cookie":"tt_webid_v2=6912345678901234567"},"collector":['
             '{"id":"7006694664724122881","secretID":"7006694664724122881","text":"Inst: kikakim🤍 #dance #xuhuong",'
             '"createTime":1631373229,"authorMeta":{"id":"6785823001336415238","secUid":"MS4wLjABAAAAeH_XfG3m",'
             '"name":"kikakiim","nickName":"Kika Kim","verified":false,"signature":"@xoteam\\nInstagram: @kikakim",'
             '"avatar":"https://p16-sign-sg.tiktokcdn.com/aweme/1080x1080/a47.jpeg","following":89,"fans":24100000,'
             '"heart":628900000,"video":829,"digg":6733},"musicMeta":{"musicId":"6952235736812750850",'
             '"musicName":"Cứ Chill Thôi (DJ TuSo & LEA Remix)","musicAuthor":"Chillies & Suni Hạ Linh & Rhymastic",'
             '"musicOriginal":false,"musicAlbum":"Cứ Chill Thôi (DJ TuSo & LEA Remix)",'
             '"playUrl":"https://sf16-ies-music-va.tiktokcdn.com/obj/tos-useast2a-ve-2774/dec7f7cc",'
             '"coverThumb":"https://p77-va.tiktokcdn.com/img/f5e7~c5_100x100.jpeg",'
             '"coverMedium":"https://p77-va.tiktokcdn.com/img/f5e7~c5_200x200.jpeg",'
             '"coverLarge":"https://p77-va.tiktokcdn.com/img/f5e7~c5_720x720.jpeg","duration":60},'
             '"covers":{"default":"https://p16-sign-sg.tiktokcdn.com/obj/e31a.jpeg",'
             '"origin":"https://p16-sign-sg.tiktokcdn.com/obj/dced.jpeg","dynamic":"https://p16-sign-sg.tiktokcdn.com/obj/9a0f.webp"},'
             '"webVideoUrl":"https://www.tiktok.com/@kikakiim/video/7006694664724122881",'
             '"videoUrl":"https://v16-web.tiktok.com/video/tos/alisg/abc/","videoUrlNoWaterMark":"",'
             '"videoApiUrlNoWaterMark":"","videoMeta":{"height":1024,"width":576,"duration":11},'
             '"diggCount":2500000,"shareCount":9114,"playCount":17300000,"commentCount":19100,"downloaded":false,'
             '"mentions":[],"hashtags":[{"id":"42164","name":"dance","title":"","cover":""},'
             '{"id":"1660331867963394","name":"xuhuong","title":"","cover":""}],"effectStickers":[]},'
             '{"id":"7006000000000000002","secretID":"7006000000000000002","text":"","createTime":1631000000,'
             '"authorMeta":{"id":"1","secUid":"MS4","name":"nobody","nickName":"nobody","verified":true,"signature":"",'
             '"avatar":"","following":0,"fans":12,"heart":7,"video":1,"digg":0},"musicMeta":{"musicId":"",'
             '"musicName":"","musicAuthor":"","musicOriginal":true,"duration":0},"covers":{},"webVideoUrl":"",'
             '"videoUrl":"","videoUrlNoWaterMark":"","videoApiUrlNoWaterMark":"","videoMeta":{"height":1024,'
             '"width":576,"duration":7},"diggCount":1,"shareCount":0,"playCount":40,"commentCount":0,"downloaded":true,'
             '"mentions":[],"hashtags":[],"effectStickers":[]}]}')

APIFY_ARRAY = """[
  {
    "id": "7261000000000000011",
    "text": "recipe time ✨ #foodtok #easyrecipe",
    "textLanguage": "en",
    "createTime": "1690656555",
    "createTimeISO": "2023-07-29T18:49:15.000Z",
    "isAd": false,
    "authorMeta": {
      "id": "6712345678901234567",
      "name": "chef.mia",
      "profileUrl": "https://www.tiktok.com/@chef.mia",
      "nickName": "Chef Mia",
      "verified": false,
      "signature": "",
      "bioLink": null,
      "avatar": "https://p16-sign-va.tiktokcdn.com/avatar.jpeg",
      "privateAccount": false,
      "following": "311",
      "friends": 40,
      "fans": "88200",
      "heart": "2400000",
      "video": "402",
      "digg": 1500
    },
    "musicMeta": {
      "musicName": "original sound - chef.mia",
      "musicAuthor": "Chef Mia",
      "musicOriginal": true,
      "playUrl": "https://sf16-ies-music-va.tiktokcdn.com/obj/ies-music-ttp-dup-us/7261.mp3",
      "coverMediumUrl": "https://p16-sign-va.tiktokcdn.com/cover.jpeg",
      "musicId": "7261000000000000999"
    },
    "webVideoUrl": "https://www.tiktok.com/@chef.mia/video/7261000000000000011",
    "mediaUrls": [],
    "videoMeta": {
      "height": 1024,
      "width": 576,
      "duration": 23,
      "coverUrl": "https://p16-sign-va.tiktokcdn.com/c.jpeg",
      "definition": "540p",
      "format": "mp4"
    },
    "diggCount": "5400",
    "shareCount": "120",
    "playCount": "210000",
    "collectCount": "213",
    "commentCount": "88",
    "mentions": [],
    "hashtags": [
      {
        "name": "foodtok"
      },
      {
        "name": "easyrecipe"
      }
    ],
    "effectStickers": [],
    "isSlideshow": false,
    "isPinned": false,
    "searchHashtag": {
      "name": "foodtok",
      "views": 0
    }
  },
  {
    "id": "7261000000000000012",
    "text": "part 2",
    "createTimeISO": "2023-07-30T08:00:00.000Z",
    "authorMeta": {
      "name": "chef.mia",
      "fans": "88200"
    },
    "musicMeta": {
      "musicName": "original sound - chef.mia",
      "musicAuthor": "Chef Mia",
      "musicId": "7261000000000000999"
    },
    "videoMeta": {
      "duration": 31
    },
    "diggCount": 10,
    "shareCount": 0,
    "playCount": 1500,
    "collectCount": 2,
    "commentCount": 1,
    "hashtags": []
  }
]"""

SIGI_STATE = ('{"AppContext":{"appContext":{"language":"en","region":"US","appId":1233}},"SEOState":{"canonical":'
              '"https://www.tiktok.com/@dj.kuro/video/7250000000000000001"},"ItemModule":{"7250000000000000001":'
              '{"id":"7250000000000000001","desc":"drop \\u2764\\ufe0f #edm","createTime":"1688000000","scheduleTime":0,'
              '"video":{"id":"7250000000000000001","height":1024,"width":576,"duration":12,"ratio":"540p",'
              '"format":"mp4","bitrate":700000,"codecType":"h264","definition":"540p"},"author":"dj.kuro",'
              '"music":{"id":"7100000000000000042","title":"Midnight Drop","authorName":"KURO","original":false,'
              '"duration":60,"album":""},"challenges":[{"id":"3306","title":"edm","desc":"","isCommerce":false}],'
              '"stats":{"diggCount":800,"shareCount":40,"commentCount":22,"playCount":30500},'
              '"isActivityItem":false,"duetInfo":{"duetFromId":"0"},"warnInfo":[],"originalItem":false,'
              '"officalItem":false,"textExtra":[{"awemeId":"","start":8,"end":12,"hashtagId":"3306","hashtagName":'
              '"edm","type":1,"subType":0,"isCommerce":false}],"secret":false,"forFriend":false,"digged":false,'
              '"itemCommentStatus":0,"showNotPass":false,"vl1":false,"takeDown":0,"itemMute":false,"effectStickers":[],'
              '"authorStats":{"followerCount":9000,"followingCount":12,"heart":120000,"heartCount":120000,'
              '"videoCount":48,"diggCount":3},"privateItem":false,"duetEnabled":true,"stitchEnabled":true,'
              '"stickersOnItem":[],"isAd":false,"shareEnabled":true,"comments":[],"duetDisplay":0,"stitchDisplay":0,'
              '"indexEnabled":true,"diversificationLabels":["Music"],"locationCreated":"JP","suggestedWords":[],'
              '"contents":[],"nickname":"KURO","authorId":"6900000000000000002","authorSecId":"MS4wLjABAAAAk",'
              '"avatarThumb":"https://p16-sign-va.tiktokcdn.com/k.jpeg","downloadSetting":0,'
              '"authorPrivate":false}},"UserModule":{"users":{"dj.kuro":{"id":"6900000000000000002","uniqueId":'
              '"dj.kuro","nickname":"KURO","verified":true,"secUid":"MS4wLjABAAAAk","privateAccount":false}},'
              '"stats":{"dj.kuro":{"followerCount":9000,"followingCount":12,"heart":120000,"heartCount":120000,'
              '"videoCount":48,"diggCount":3}}},"ItemList":{"video":{"list":["7250000000000000001"]}}}')

REHYDRATION = ('{"__DEFAULT_SCOPE__":{"webapp.app-context":{"language":"en","region":"GB","user":{}},'
               '"webapp.biz-context":{"isBot":false},"webapp.video-detail":{"itemInfo":{"itemStruct":'
               '{"id":"7350000000000000077","desc":"caf\\u00e9 morning ☕ #coffee","createTime":"1698000000",'
               '"scheduleTime":0,"video":{"id":"7350000000000000077","height":1920,"width":1080,"duration":9,'
               '"ratio":"720p","format":"mp4","VQScore":"70.1"},"author":{"id":"7000000000000000003","uniqueId":'
               '"bean.there","nickname":"Bean","verified":false,"secUid":"MS4wLjABAAAAb","privateAccount":false,'
               '"isEmbedBanned":false,"UserStoryStatus":0},"music":{"id":"7350000000000000999","title":'
               '"original sound - bean.there","authorName":"Bean","original":true,"duration":9,"album":"",'
               '"isCopyrighted":false},"challenges":[{"id":"10021","title":"coffee","desc":""}],"stats":'
               '{"diggCount":41,"shareCount":2,"commentCount":3,"playCount":1800,"collectCount":5},"statsV2":'
               '{"diggCount":"41","shareCount":"2","commentCount":"3","playCount":"1800","collectCount":"5",'
               '"repostCount":"0"},"authorStats":{"followerCount":230,"followingCount":180,"heart":5100,"heartCount":'
               '5100,"videoCount":77,"diggCount":900,"friendCount":40},"authorStatsV2":{"followerCount":"230",'
               '"followingCount":"180","heart":"5100","heartCount":"5100","videoCount":"77","diggCount":"900",'
               '"friendCount":"40"},"textExtra":[{"hashtagName":"coffee","type":1}],"isAd":false,"AIGCDescription":'
               '""}},"shareMeta":{"title":"Bean on TikTok","desc":"1800 views"},"statusCode":0,"statusMsg":""}}}')

PAGE_POST = """{
  "id": "7300000000000000005",
  "desc": "street food in Đà Nẵng 🍜",
  "createTime": 1699000000,
  "video": {
    "duration": 21,
    "height": 1024,
    "width": 576
  },
  "author": {
    "uniqueId": "eat.vn",
    "verified": false
  },
  "music": {
    "id": "6952235736812750850",
    "title": "Cứ Chill Thôi",
    "authorName": "Chillies"
  },
  "stats": {
    "playCount": 4100,
    "shareCount": 9,
    "commentCount": 15,
    "diggCount": 300,
    "collectCount": 11
  }
}
"""

YTDLP_A = ('{"id": "7261234500000000001", "formats": [{"format_id": "download", "url": '
           '"https://v16-webapp-prime.tiktok.com/video/tos/a/", "ext": "mp4", "format_note": "watermarked", '
           '"preference": -2, "vcodec": "h264", "acodec": "aac"}], "subtitles": {}, "http_headers": {"Referer": '
           '"https://www.tiktok.com/@mika.moves/video/7261234500000000001"}, "channel": "Mika ✨", "channel_id": '
           '"MS4wLjABAAAAm", "uploader": "mika.moves", "uploader_id": "6800000000000000009", "channel_url": '
           '"https://www.tiktok.com/@MS4wLjABAAAAm", "uploader_url": "https://www.tiktok.com/@mika.moves", "track": '
           '"Espresso", "album": "Espresso", "artists": ["Sabrina Carpenter"], "duration": 14, "title": '
           '"new dance 💃 #dance #fyp", "description": "new dance 💃 #dance #fyp", "timestamp": 1715000000, '
           '"view_count": 250000, "like_count": 31000, "repost_count": 800, "comment_count": 410, '
           '"channel_follower_count": 120000, "thumbnails": [{"id": "cover", "url": "https://p16-sign.tiktokcdn-us.com/c", '
           '"preference": -1}], "webpage_url": "https://www.tiktok.com/@mika.moves/video/7261234500000000001", '
           '"original_url": "https://www.tiktok.com/@mika.moves/video/7261234500000000001", "webpage_url_basename": '
           '"7261234500000000001", "webpage_url_domain": "tiktok.com", "extractor": "TikTok", "extractor_key": '
           '"TikTok", "thumbnail": "https://p16-sign.tiktokcdn-us.com/c", "display_id": "7261234500000000001", '
           '"fulltitle": "new dance 💃 #dance #fyp", "duration_string": "14", "upload_date": "20240506", '
           '"artist": "Sabrina Carpenter", "epoch": 1716000000, "format_id": "download", "ext": "mp4", '
           '"protocol": "https", "_type": "video", "_version": {"version": "2024.05.27", "current_git_head": null, '
           '"release_git_head": "12b248ce60be1aa1362edd839d915bba70dbee4b", "repository": "yt-dlp/yt-dlp"}}')

YTDLP_B = ('{"id": "7261234500000000002", "formats": [], "channel": "Mika ✨", "uploader": "mika.moves", "track": '
           '"Espresso", "artists": ["sabrina  carpenter"], "duration": 9, "title": "take two", "description": '
           '"take two", "timestamp": 1715100000, "view_count": 9000, "like_count": 700, "repost_count": 3, '
           '"comment_count": 12, "webpage_url": "https://www.tiktok.com/@mika.moves/video/7261234500000000002", '
           '"extractor": "TikTok", "extractor_key": "TikTok", "upload_date": "20240507", "epoch": 1716000000, '
           '"ext": "mp4", "_type": "video"}')

YTDLP_C = ('{"id": "7261234500000000003", "formats": [], "uploader": "mika.moves", "track": "original sound", '
           '"artists": null, "duration": 30, "title": "storytime", "description": "storytime", "timestamp": '
           '1715200000, "view_count": 500, "like_count": 20, "repost_count": 0, "comment_count": 2, "extractor": '
           '"TikTok", "extractor_key": "TikTok", "epoch": 1716000000, "ext": "mp4", "_type": "video"}')

YTDLP_PLAYLIST = ('{"id": "6800000000000000009", "title": "mika.moves", "channel": "Mika ✨", "uploader": '
                  '"mika.moves", "thumbnails": [], "extractor": "tiktok:user", "extractor_key": "TikTokUser", '
                  '"webpage_url": "https://www.tiktok.com/@mika.moves", "_type": "playlist", "playlist_count": 3, '
                  '"epoch": 1716000000, "_version": {"version": "2024.05.27"}}')

SCRAPER_CSV = (
    'id,secretID,text,createTime,authorMeta.id,authorMeta.secUid,authorMeta.name,authorMeta.nickName,'
    'authorMeta.verified,authorMeta.signature,authorMeta.avatar,authorMeta.following,authorMeta.fans,authorMeta.heart,'
    'authorMeta.video,authorMeta.digg,musicMeta.musicId,musicMeta.musicName,musicMeta.musicAuthor,'
    'musicMeta.musicOriginal,musicMeta.musicAlbum,musicMeta.playUrl,musicMeta.coverThumb,musicMeta.coverMedium,'
    'musicMeta.coverLarge,musicMeta.duration,covers.default,covers.origin,covers.dynamic,webVideoUrl,videoUrl,'
    'videoUrlNoWaterMark,videoApiUrlNoWaterMark,videoMeta.height,videoMeta.width,videoMeta.duration,diggCount,'
    'shareCount,playCount,commentCount,downloaded,mentions,hashtags,effectStickers\n'
    '"7006694664724122881","7006694664724122881","Inst: kikakim🤍, ""quoted"" #dance",1631373229,'
    '"6785823001336415238","MS4wLjABAAAAeH","kikakiim","Kika Kim",false,"@xoteam\nInstagram: @kikakim",'
    '"https://p16-sign-sg.tiktokcdn.com/a.jpeg",89,24100000,628900000,829,6733,"6952235736812750850",'
    '"Cứ Chill Thôi","Chillies",false,"Cứ Chill Thôi","https://sf16/x","https://p77/a","https://p77/b",'
    '"https://p77/c",60,"https://p16/d","https://p16/o","https://p16/y",'
    '"https://www.tiktok.com/@kikakiim/video/7006694664724122881","https://v16-web.tiktok.com/v/","","",1024,576,11,'
    '2500000,9114,17300000,19100,false,"[]","[{""id"":""42164"",""name"":""dance"",""title"":"""",""cover"":""""}]",'
    '"[]"\n'
    '"7006000000000000002","7006000000000000002","",1631000000,"1","MS4","nobody","nobody",true,"","",0,12,7,1,0,'
    '"","","",true,"","","","","",0,"","","","","","","",1024,576,7,1,0,40,0,true,"[]","[]","[]"\n')

CUSTOM_CSV = ('\ufeffVideo ID;Posted;Views;Shares;Comments;Likes;Sound ID;Caption\r\n'
              '7400000000000000001;2024-07-01T12:00:00Z;12000;30;45;900;7100000000000000042;"été ☀️ #summer"\r\n'
              '7400000000000000002;2024-07-02 08:30:00;800;0;2;40;;"no sound"\r\n')

#: the mobile app API (``/aweme/v1/...``): snake_case keys, ``statistics``, durations in milliseconds, ``music.id`` a
#: 64-bit JSON number beside its ``id_str``, ``cha_list`` null
APP_AWEME_LIST = (
    '{"status_code":0,"min_cursor":0,"max_cursor":1629096986000,"has_more":1,"aweme_list":[{"aweme_id":'
    '"6901762673936059654","desc":"d\u00e9j\u00e0 vu \U0001f501 #fyp","create_time":1607000000,"author":{"uid":'
    '"6564062791182581765","short_id":"0","nickname":"Ren","signature":"","avatar_thumb":{"uri":"x","url_list":[]},'
    '"follow_status":0,"aweme_count":88,"following_count":30,"follower_count":1200,"favoriting_count":10,'
    '"total_favorited":45000,"is_block":false,"hide_search":false,"custom_verify":"","unique_id":"ren.loops",'
    '"enterprise_verify_reason":"","verification_type":0,"region":"US"},"music":{"id":6767362751674189825,'
    '"id_str":"6767362751674189825","title":"Loop Theory","author":"Ren","album":"","cover_thumb":{"uri":"m",'
    '"url_list":[]},"duration":30,"is_original_sound":false,"owner_handle":"ren.loops"},"cha_list":null,'
    '"video":{"play_addr":{"uri":"v","url_list":[]},"height":1024,"width":576,"duration":13651,'
    '"ratio":"540p"},"share_url":"https://www.tiktok.com/@ren.loops/video/6901762673936059654",'
    '"user_digged":0,"statistics":{"aweme_id":"6901762673936059654","comment_count":12,"digg_count":300,'
    '"download_count":1,"play_count":4000,"share_count":5,"forward_count":0,"lose_count":0,"lose_comment_count":0,'
    '"whatsapp_share_count":0,"collect_count":9},"text_extra":[{"start":12,"end":16,"user_id":"","type":1,'
    '"hashtag_name":"fyp","hashtag_id":"229207","is_commerce":false}],"duration":13651,"aweme_type":0,'
    '"group_id":"6901762673936059654","region":"US"}],"extra":{"now":1629096986000,"fatal_item_ids":[]},'
    '"log_pb":{"impr_id":"2021081606562501024516814053021F71"}}')

#: Apify's CSV export: nested fields flattened with '/', lists as numbered columns, every value quoted only if needed
APIFY_CSV = (
    'authorMeta/avatar,authorMeta/fans,authorMeta/following,authorMeta/heart,authorMeta/name,authorMeta/verified,'
    'authorMeta/video,collectCount,commentCount,createTimeISO,diggCount,hashtags/0/name,hashtags/1/name,id,'
    'musicMeta/musicAuthor,musicMeta/musicId,musicMeta/musicName,playCount,shareCount,text,videoMeta/duration,'
    'webVideoUrl\n'
    'https://p16-sign-va.tiktokcdn.com/a.jpeg,88200,311,2400000,chef.mia,false,402,213,88,2023-07-29T18:49:15.000Z,'
    '5400,foodtok,easyrecipe,7261000000000000011,Chef Mia,7261000000000000999,original sound - chef.mia,210000,120,'
    '"recipe time ✨ #foodtok #easyrecipe",23,https://www.tiktok.com/@chef.mia/video/7261000000000000011\n'
    'https://p16-sign-va.tiktokcdn.com/a.jpeg,88200,311,2400000,chef.mia,false,402,2,1,2023-07-30T08:00:00.000Z,10,'
    ',,7261000000000000012,Chef Mia,7261000000000000999,original sound - chef.mia,1500,0,part 2,31,'
    'https://www.tiktok.com/@chef.mia/video/7261000000000000012\n')
